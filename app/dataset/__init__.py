"""The dataset loop: recording answered requests, the file lock, and labelling."""
