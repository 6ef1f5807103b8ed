"""Building images from plans: the blob cache, pip dependency layers, base-image facts, and image assembly."""
