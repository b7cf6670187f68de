"""The "use this version" box of a version page: the same version (pinned by number, so a later alias
move does not change what the line reads) as a mount path, a download command, a Python line and an
`artifactfs://` URL for pandas, each a line to copy."""

import shlex

MOUNT_PLACEHOLDER = "MOUNT"  # when no read-only mount of this store is on this machine


def snippets(artifact: str, version: int, directory: str, mounts: list[str]) -> list[dict]:
    """[{"label", "text"}] for `artifact:vN` (and the `directory` of it a page shows); `mounts`: this
    machine's read-only mounts of the store (the first one is used), else `MOUNT` stands in."""
    ref = f"{artifact}:v{version}"
    name = artifact.rsplit("/", 1)[-1]
    tail = f"{directory}/" if directory else ""
    root = mounts[0] if mounts else MOUNT_PLACEHOLDER
    local = f"./{name}-v{version}"
    prefix = f" --prefix {shlex.quote(directory)}" if directory else ""
    python_prefix = f", path_prefix={directory!r}" if directory else ""
    return [
        {"label": "mounted", "text": f"{root}/{ref}/{tail}"},
        {"label": "mounted (one directory per version)", "text": f"{root}/{artifact}/v{version}/{tail}"},
        {"label": "download", "text": f"artifactfs get {shlex.quote(ref)}{prefix} --root {local}"},
        {"label": "Python", "text": f"artifactfs.artifact({ref!r}).download(root={local!r}{python_prefix})"},
        {"label": "pandas, fsspec", "text": f"artifactfs://{ref}/{tail}"},
    ]
