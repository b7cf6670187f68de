"""The one bounded least-recently-used table the caches of records, manifests, versions and piece lists
share: an OrderedDict that keeps its `bound` most recently used entries."""

from collections import OrderedDict
from typing import Any

MISSING: Any = object()  # get's default: tells "absent" from a kept None


class LRU(OrderedDict):
    """`get` counts a hit as a use; `put` adds (or replaces) an entry as the newest and drops the oldest
    past the bound. Not locked: a table shared by threads is used under its owner's lock."""

    def __init__(self, bound: int):
        super().__init__()
        self.bound = bound

    def get(self, key, default=None):
        value = super().get(key, MISSING)
        if value is MISSING:
            return default
        self.move_to_end(key)
        return value

    def put(self, key, value):
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.bound:
            self.popitem(last=False)
        return value
