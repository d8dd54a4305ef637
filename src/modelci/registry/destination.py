"""The folder `modelci pull -o DIR` writes to: a missing folder, an empty one, or an earlier pull.

A pull never removes or overwrites a file it did not write, and it decides where it may write
before it fetches anything:

- a missing folder: the files are written to a hidden folder beside it, renamed into place whole;
- an empty folder: the files are written to a hidden folder inside it, then moved in one by one,
  `manifest.json` last, each to a name nothing holds; the folder itself stays (a mount point, the
  current folder);
- an earlier pull: exactly the files its `manifest.json` names, each unchanged, and nothing else.
  The new pull is written beside it; the old folder is renamed aside, checked against its digests
  (no one reaches it by its name any more), the new one renamed into place, and the old files
  removed by name. A folder that fails any of this is put back as it was. A folder that cannot be
  renamed (a mount point, or one in a folder this user may not write) is replaced in place instead:
  the new pull is written inside it, the earlier files are moved aside inside it, `manifest.json`
  first, and checked against their digests, then the new files are moved in, `manifest.json` last.

Anything else (a file, a folder with other files, a changed pull) is refused with exit 2.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from modelci import atomic, github
from modelci.errors import ModelciError, UsageError
from modelci.registry.layout import Descriptor

MANIFEST_FILE = "manifest.json"  # written last: a folder with it holds a whole pull
STAGING = ".modelci-pull-"
HINT = "pull into a new or empty folder (e.g. -o model), or move those files away first"

# The files a manifest names, by file name; raises (or fails to parse) when it is no model artifact's.
FilesOf = Callable[[bytes], dict[str, Descriptor]]


@dataclass(frozen=True)
class Destination:
    given: Path  # as the user wrote it
    path: Path  # the real folder, symlinks followed
    empty: bool  # an empty folder, which stays
    earlier: dict[str, Descriptor] | None = None  # the files of the earlier pull it holds
    in_place: bool = False  # the earlier pull is replaced inside the folder, which cannot be renamed


def inspect(given: Path, files_of: FilesOf) -> Destination:
    """Where the pull may write, or a UsageError saying why not; nothing is written."""
    if given.is_symlink() and not given.exists():
        raise UsageError(f"{given} is a symbolic link to nothing", hint="name a folder, or make the link's target")
    path = given.resolve()  # NOTE: follows a link to the folder it names; `.` and `..` become real names
    _check_ancestors(given, path)
    if not path.exists():
        return Destination(given, path, empty=False)
    if not path.is_dir():
        raise UsageError(f"{given} is not a folder; a pull writes a folder of files", hint=HINT)
    names = sorted(p.name for p in path.iterdir())
    if not names:
        return Destination(given, path, empty=True)
    earlier = _looks_like_a_pull(path, names, files_of)
    if earlier is None:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise UsageError(f"{given} is not empty and is not a folder `modelci pull` wrote ({shown}); a pull never "
                         "removes files it did not write", hint=HINT)
    if path == Path.cwd().resolve():
        raise UsageError(f"{given} is the current folder and holds an earlier pull, which a pull replaces whole",
                         hint="pull from its parent folder, or into another folder")
    return Destination(given, path, empty=False, earlier=earlier, in_place=not _renamable(path))


def _renamable(path: Path) -> bool:
    """Whether the folder can be renamed aside: not a mount point, and in a folder this user may write."""
    return not os.path.ismount(path) and os.access(path.parent, os.W_OK | os.X_OK)


def _check_ancestors(given: Path, path: Path) -> None:
    for ancestor in path.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise UsageError(f"{ancestor} is not a folder, so {given} cannot be made in it", hint=HINT)
            return


def _regular(path: Path) -> bool:
    """A plain file, not a link to one."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def _looks_like_a_pull(path: Path, names: list[str], files_of: FilesOf) -> dict[str, Descriptor] | None:
    """The files of the pull the folder holds: its manifest's files, each of its size, and nothing else.

    NOTE: sizes only, which is cheap; the digests are checked once the folder is renamed aside (`_swap`)."""
    marker = path / MANIFEST_FILE
    if MANIFEST_FILE not in names or not _regular(marker):
        return None
    try:
        files = files_of(marker.read_bytes())
    except (ModelciError, OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not files or sorted([*files, MANIFEST_FILE]) != names:  # NOTE: a pull wrote at least model.onnx
        return None
    if not all(_regular(path / n) and (path / n).stat().st_size == d.size for n, d in files.items()):
        return None
    return files


def _unchanged(path: Path, files: dict[str, Descriptor]) -> bool:
    """Every file of the pull still has the digest its manifest gives, and no other file came."""
    if sorted(p.name for p in path.iterdir()) != sorted([*files, MANIFEST_FILE]):
        return False
    for name, descriptor in files.items():
        if not _regular(path / name):
            return False
        with (path / name).open("rb") as handle:
            if atomic.stream_sha256(handle) != (descriptor.digest, descriptor.size):
                return False
    return True


@contextmanager
def staged(destination: Destination) -> Iterator[Path]:
    """A new private folder for the pull's files; when the block ends without error, they take the place
    of the destination's. On any error the folder is removed and the destination is as it was."""
    parent = destination.path if destination.empty or destination.in_place else destination.path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING}{destination.path.name}-", dir=parent))
    except OSError as exc:
        raise UsageError(f"cannot write to {parent}: {exc.strerror}", hint=HINT) from None
    try:
        yield staging
        if destination.empty:
            _move_in(staging, destination)
        elif destination.earlier is not None and destination.in_place:
            _replace_in_place(staging, destination, destination.earlier)
        elif destination.earlier is not None:
            _swap(staging, destination, destination.earlier)
        else:
            _rename(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # NOTE: modelci's own folder, made above
        raise


def _rename(staging: Path, destination: Destination) -> None:
    try:
        # NOTE: a rename replaces no file and no folder with anything in it: only a missing or empty folder
        os.rename(staging, destination.path)
    except OSError:
        raise UsageError(f"{destination.given} was made by someone else while pulling; it was left as it is",
                         hint="pull again") from None


def _move_in(staging: Path, destination: Destination) -> None:
    """Move the files into the (empty) folder, manifest last; each to a name that nothing holds."""
    names = [*sorted(p.name for p in staging.iterdir() if p.name != MANIFEST_FILE), MANIFEST_FILE]
    moved: list[Path] = []
    try:
        for name in names:
            target = destination.path / name
            try:
                # NOTE: claimed first (O_EXCL), so the rename replaces only modelci's own empty file
                os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                raise UsageError(f"{target} was made by someone else while pulling; it was left as it is",
                                 hint="pull again, into a folder no one else writes to") from None
            moved.append(target)
            os.rename(staging / name, target)
    except BaseException:
        for target in moved:
            target.unlink(missing_ok=True)
        raise
    staging.rmdir()


def _replace_in_place(staging: Path, destination: Destination, earlier: dict[str, Descriptor]) -> None:
    """Put the new pull in the place of the earlier one inside the folder itself, which stays."""
    path = destination.path
    aside = Path(tempfile.mkdtemp(prefix=f"{STAGING}{path.name}-old-", dir=path))
    names = [MANIFEST_FILE, *earlier]  # NOTE: the manifest first: the folder stops saying it holds a whole pull
    _move_files(path, aside, names, destination.given)
    if not _unchanged(aside, earlier):
        _move_files(aside, path, names, destination.given)
        aside.rmdir()
        raise UsageError(f"{destination.given} is not a folder `modelci pull` wrote: a file in it was changed "
                         "since; a pull never removes files it did not write", hint=HINT)
    try:
        _move_in(staging, destination)
    except BaseException:
        _move_files(aside, path, names, destination.given)
        aside.rmdir()
        raise
    for name in names:
        (aside / name).unlink(missing_ok=True)
    aside.rmdir()


def _move_files(source: Path, target: Path, names: list[str], given: Path) -> None:
    """Move the named files from `source` to `target`, each to a name nothing holds there."""
    for name in names:
        try:
            # NOTE: claimed first (O_EXCL), so the rename replaces only modelci's own empty file
            os.close(os.open(target / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            raise UsageError(f"{target / name} was made by someone else while pulling into {given}; the earlier "
                             f"pull's files are in {source}", hint="move them back by hand") from None
        os.rename(source / name, target / name)


def _swap(staging: Path, destination: Destination, earlier: dict[str, Descriptor]) -> None:
    """Put the new pull in the place of the earlier one, which is removed file by file."""
    path = destination.path
    aside = Path(tempfile.mkdtemp(prefix=f"{STAGING}{path.name}-old-", dir=path.parent))
    try:
        os.rename(path, aside)  # NOTE: onto the empty folder just made
    except OSError as exc:
        aside.rmdir()
        raise UsageError(f"cannot replace {destination.given} ({exc.strerror}; a mount point cannot be replaced)",
                         hint="pull into a new folder inside it") from None
    if not _unchanged(aside, earlier):
        _put_back(aside, destination)
        raise UsageError(f"{destination.given} is not a folder `modelci pull` wrote: a file in it was changed "
                         "since; a pull never removes files it did not write", hint=HINT)
    try:
        os.rename(staging, path)
    except BaseException:
        _put_back(aside, destination)
        raise
    for name in [*earlier, MANIFEST_FILE]:
        (aside / name).unlink(missing_ok=True)
    try:
        aside.rmdir()
    except OSError:
        github.warning(f"{aside} holds files someone wrote while {destination.given} was replaced; left there")


def _put_back(aside: Path, destination: Destination) -> None:
    try:
        os.rename(aside, destination.path)
    except OSError:
        raise UsageError(f"{destination.given} was made by someone else while pulling; the earlier pull that "
                         f"was there is now {aside}", hint="move it back by hand") from None
