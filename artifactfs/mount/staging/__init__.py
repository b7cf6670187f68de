"""The staging mount: a writable tree over a base version (fs.py), its data files and journal
(files.py), and the freeze/thaw a commit uses (freeze.py)."""
