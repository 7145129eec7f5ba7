"""lus_utils: the logic of the lung-ultrasound synthetic-minority study, one module per stage."""
__version__ = "0.1.0"
