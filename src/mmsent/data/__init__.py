"""The data layer: MELD CSVs, dataset layouts, one-pass media decoding, Dataset, and the sample."""
