# A namespace shared with any real Azure ML package installed beside it.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)
