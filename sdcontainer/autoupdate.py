"""`sdcontainer auto-update`: podman's auto-update, for the units of AutoUpdate= files.

The running containers come from their records (sdcontainer.state): each whose labels have
io.containers.autoupdate (AutoUpdate= writes it, as podman does; Label= may too) is checked:

- `registry`: the digest of the registry's manifest for the image's name (`skopeo inspect
  --raw`: one small request, nothing pulled) against the image the container runs (by id, from
  its record): the digest its pull recorded for that name, or its own manifest's;
- `local`: the id of the image the store has under that name now against the running one.

An image that changed is pulled (registry) and the unit restarted with `systemctl restart`.
The restart counts as good when systemctl succeeds and the unit is still active, with the
same invocation and main process, SETTLE_SECONDS later (a container that exits right after
its start fails after systemd saw it started). Otherwise, with rollback on (the default), the
name is pointed back at the image the unit ran before, which is still in the store (only
`image prune` removes an image without a name), and the unit restarted again: no network is
needed to go back. Each unit is reported as podman reports it: true (updated), false (up to
date), pending (--dry-run: an update is there), failed, rolled back.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

from sdcontainer.errors import ImageError, RecordError, SdcontainerError
from sdcontainer.record import record
from sdcontainer.state import ContainerRecord, records

LABEL = "io.containers.autoupdate"
POLICIES = {"registry": "registry", "image": "registry", "local": "local"}  # podman's "image": registry's old name
SETTLE_SECONDS = 5.0  # how long a restarted unit must stay up to count as started


@record
class Report:
    unit: str
    container: str
    image: str
    policy: str
    updated: str  # true, false, pending, failed, rolled back
    message: str = ""  # why it failed, or what was done

    def as_dict(self) -> dict[str, str]:
        return {
            "unit": self.unit,
            "container": self.container,
            "image": self.image,
            "policy": self.policy,
            "updated": self.updated,
            "message": self.message,
        }


def units_to_update(unreadable: list[RecordError] | None = None) -> list[tuple[ContainerRecord, str]]:
    """Running containers with an auto-update policy, and the policy."""
    found = []
    for container in records(unreadable):
        if not os.path.exists(f"/proc/{container.pid}"):
            continue  # stopping right now
        policy = dict(container.labels).get(LABEL)
        if policy in POLICIES and container.image and container.image_id:
            found.append((container, POLICIES[policy]))
    return found


def auto_update(
    *, dry_run: bool = False, rollback: bool = True, settle: float = SETTLE_SECONDS, root: str | None = None
) -> list[Report]:
    """Check, update and restart each unit with a policy; one Report each, in unit order."""
    unreadable: list[RecordError] = []
    reports = []
    for container, policy in units_to_update(unreadable):
        try:
            reports.append(_update(container, policy, dry_run, rollback, settle, root))
        except (SdcontainerError, OSError) as error:
            message = str(error) if isinstance(error, SdcontainerError) else f"{error.strerror}"
            reports.append(_report(container, policy, "failed", message))
    for problem in unreadable:
        reports.append(Report(str(problem).partition(":")[0], "", "", "", "failed", str(problem)))
    return reports


def _report(container: ContainerRecord, policy: str, updated: str, message: str = "") -> Report:
    return Report(container.unit, container.name, container.image or "", policy, updated, message)


def _update(
    container: ContainerRecord, policy: str, dry_run: bool, rollback: bool, settle: float, root: str | None
) -> Report:
    from sdcontainer.reference import candidates
    from sdcontainer.store import find_image, load_record

    image = container.image or ""
    running = container.image_id or ""
    if policy == "registry":
        from sdcontainer.images import registry_digest

        names = candidates(image)
        name = names[0]
        if len(names) != 1:
            raise ImageError(f"{image}: AutoUpdate=registry needs an image name with its registry")
        digest = registry_digest(name, retry=1)
        try:
            ran = load_record(running, root)
        except FileNotFoundError:
            ran = {}
        if digest in (ran.get("digest"), (ran.get("sources") or {}).get(name)):
            return _report(container, policy, "false")
        if dry_run:
            return _report(container, policy, "pending", f"the registry has {digest}")
        from sdcontainer.images import pull

        new = pull(name, policy="always", quiet=True, root=root)
        if new["id"] == running:
            return _report(container, policy, "false", "the new manifest has the running image's config")
    else:
        current = find_image(image, root)
        if current is None:
            raise ImageError(f"{image} is not in the store: nothing to compare the running image with")
        if current["id"] == running:
            return _report(container, policy, "false")
        if dry_run:
            return _report(container, policy, "pending", f"the store has {current['id'][:12]}")
        name, new = _stored_name(image, current), current
    failure = restart(container.unit, settle)
    if failure is None:
        return _report(container, policy, "true", f"{running[:12]} -> {new['id'][:12]}")
    if not rollback:
        return _report(container, policy, "failed", f"{new['id'][:12]}: {failure}")
    _point(name, running, root)
    again = restart(container.unit, settle)
    if again is not None:
        message = f"{new['id'][:12]}: {failure}; back to {running[:12]}, which failed too: {again}"
        return _report(container, policy, "failed", message)
    return _report(container, policy, "rolled back", f"{new['id'][:12]}: {failure}; running {running[:12]} again")


def _stored_name(image: str, found: dict[str, Any]) -> str:
    """The stored name a reference found the image by (a short name may mean several)."""
    from sdcontainer.reference import candidates

    names = found.get("names") or []
    return next((name for name in candidates(image) if name in names), image)


def _point(name: str, image_id: str, root: str | None) -> None:
    """The name back at the image the unit ran before the update."""
    from sdcontainer.store import Store

    with Store(root) as store:
        if store.record(image_id) is None:
            raise ImageError(f"cannot roll back to {image_id[:12]}: it is no longer in the store")
        store.tag(name, image_id)


def _show(unit: str) -> dict[str, str]:
    out = subprocess.run(
        ["systemctl", "show", "--property=ActiveState,SubState,InvocationID,MainPID,Result", unit],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return dict(line.partition("=")[::2] for line in out.splitlines() if "=" in line)


def restart(unit: str, settle: float = SETTLE_SECONDS) -> str | None:
    """Restart the unit and wait until it has stayed up for `settle` seconds: None if it has,
    else why not. A failed unit's start counter is reset first, so that a unit that failed
    once (the update being tried) is not refused by its start limit on the way back."""
    subprocess.run(["systemctl", "reset-failed", unit], capture_output=True, check=False)
    done = subprocess.run(["systemctl", "restart", unit], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        state = _show(unit)
        return f"the restart failed ({state.get('ActiveState', '?')}/{state.get('Result', '?')})"
    first = _show(unit)
    end = time.monotonic() + settle
    while True:
        now = _show(unit)
        if now.get("ActiveState") != "active":
            return f"the unit did not stay active ({now.get('ActiveState', '?')}/{now.get('Result', '?')})"
        if now.get("InvocationID") != first.get("InvocationID") or now.get("MainPID") != first.get("MainPID"):
            return "the unit's main process ended and was restarted"
        if time.monotonic() >= end:
            return None
        time.sleep(0.5)
