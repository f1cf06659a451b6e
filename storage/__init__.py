"""Persistence: the three shared file formats and the LMDB index beside them."""
