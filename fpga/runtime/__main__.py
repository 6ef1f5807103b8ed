"""``python -m fpga.runtime``: an FPGA image's scoring server, the webservice's with the execution provider chosen
first (see ``fpga.runtime.provider``)."""

from __future__ import annotations

import sys

from edgepack.runtime.__main__ import main
from fpga.runtime.provider import prepare

if __name__ == "__main__":
    sys.exit(main(prepare=prepare, module="fpga.runtime"))
