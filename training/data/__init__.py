"""Data: attribute schemas, .mat files, dataset loaders (Market-1501, DukeMTMC-reID, CSV), transforms, sampler."""
