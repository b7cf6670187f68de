"""The read-only mount: MOUNT/entity/project/name:alias/ and name:vN/ served from manifests (fs.py),
its inodes, the namespace of names and versions, read-ahead over a tree walk, extended attributes."""
