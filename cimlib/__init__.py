"""CIM Workbench: customer information management and analytics for retail and rural banks."""

__version__ = "0.1.0"
