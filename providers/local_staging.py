"""Copy a `local` job's input in from the object store, and its outputs out to it.

Before the command starts, the job's input object, if one was uploaded, is copied to
`input/input` in the job directory. After the command exits, the directories and regular files
under `output/` are packed into a gzip tar archive and uploaded as the job's output object.
Symbolic links and special files are left out of the archive, because a link's target may lie
outside the job directory. `outputs.json` records the upload, so that it happens once per job
directory however often the status is read.
"""

import json
import logging
import os
import stat
import tarfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from providers.local_runner import write_json_atomic
from storage.base import ObjectStore, job_input_key, job_output_key

logger = logging.getLogger(__name__)

INPUT_FILE = "input"
"""Name of the input object's copy in the job's input directory."""

OUTPUTS_FILE = "outputs.json"
"""Record of the output upload: key, archive size, archived files and skipped paths."""

_ARCHIVE_PARTIAL = ".output.tar.gz.partial"

# Job directories whose outputs a thread of this process is uploading. A status check that
# timed out leaves its thread running, and a retry must not start a second upload meanwhile.
_uploads_in_progress: set[Path] = set()
_uploads_guard = threading.Lock()


class UploadInProgress(Exception):
    """Another thread of this process is uploading the same job's outputs."""


def download_input(store: ObjectStore, job_id: str, input_dir: Path) -> bool:
    """Copy the job's input object to `input_dir/input`; return False if none was uploaded.

    Raises:
        ObjectStoreError: The store could not be read.
    """
    partial = input_dir / f".{INPUT_FILE}.{uuid.uuid4().hex}.partial"
    try:
        found = store.get_file(job_input_key(job_id), partial)
        if found:
            os.replace(partial, input_dir / INPUT_FILE)
    finally:
        partial.unlink(missing_ok=True)
    return found


def upload_outputs_once(
    store: ObjectStore, job_id: str, job_dir: Path, output_dir: Path
) -> dict[str, Any]:
    """Upload the archive of `output_dir` unless `outputs.json` records an earlier upload.

    Returns:
        The record in `outputs.json`, new or earlier.

    Raises:
        UploadInProgress: Another thread of this process is uploading these outputs.
        ObjectStoreError: The upload failed; nothing is recorded, so the next call retries.
    """
    with _uploads_guard:
        if job_dir in _uploads_in_progress:
            raise UploadInProgress(f"the outputs in {output_dir} are already being uploaded")
        _uploads_in_progress.add(job_dir)

    try:
        return _upload_outputs(store, job_id, job_dir, output_dir)
    finally:
        with _uploads_guard:
            _uploads_in_progress.discard(job_dir)


def _upload_outputs(
    store: ObjectStore, job_id: str, job_dir: Path, output_dir: Path
) -> dict[str, Any]:
    record_path = job_dir / OUTPUTS_FILE
    if record_path.exists():
        return _read_record(record_path)

    key = job_output_key(job_id)
    archive = job_dir / _ARCHIVE_PARTIAL
    try:
        files, skipped = _write_archive(output_dir, archive)
        size = archive.stat().st_size
        store.put_file(key, archive)
    finally:
        archive.unlink(missing_ok=True)

    record = {
        "key": key,
        "bytes": size,
        "files": files,
        "skipped": skipped,
        "uploaded_at": time.time(),
    }
    write_json_atomic(record_path, record)
    if skipped:
        logger.warning(
            "Left %d symbolic links or special files of job %s out of its outputs: %s",
            len(skipped),
            job_id,
            ", ".join(skipped[:10]),
        )
    logger.info(
        "Uploaded %d output files of job %s to %s, %d bytes", len(files), job_id, key, size
    )
    return record


def _write_archive(output_dir: Path, archive: Path) -> tuple[list[str], list[str]]:
    """Write the directories and regular files under `output_dir` to a gzip tar archive.

    Returns:
        The archived files and the skipped paths, relative to `output_dir`.
    """
    files: list[str] = []
    skipped: list[str] = []
    with tarfile.open(archive, "w:gz") as tar:
        if output_dir.is_symlink() or not output_dir.is_dir():
            # The command replaced or removed its output directory, so nothing is archived.
            return files, ["."] if output_dir.is_symlink() else []

        for directory, dir_names, file_names in os.walk(output_dir):
            dir_names.sort()
            for name in [*dir_names, *sorted(file_names)]:
                path = Path(directory, name)
                relative = path.relative_to(output_dir).as_posix()
                mode = path.lstat().st_mode
                if stat.S_ISDIR(mode):
                    tar.add(path, arcname=relative, recursive=False)
                elif stat.S_ISREG(mode):
                    tar.add(path, arcname=relative, recursive=False)
                    files.append(relative)
                else:
                    skipped.append(relative)
    return files, skipped


def _read_record(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))
