"""tuttle-prep: keep the Tuttle Twins rarity datasets in S3 in sync with the episode sheets."""

__version__ = "1.0.0"
