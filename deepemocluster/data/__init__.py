"""Corpora, audio, features, chunking, datasets and the built-in demo corpus generator."""
