"""Send DICOM files to a DICOM node (a PACS) with C-STORE over one association (pynetdicom).

Each SOP class is offered in the file's own transfer syntax, and again in Explicit or Implicit VR
Little Endian, so a node that accepts the first stores exactly the bytes that were written. Every
failure is one line: the connection refused or timed out, the association rejected (with the
node's reason, e.g. an unknown called AE title) or aborted, or an object refused (with its C-STORE
status).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from LesionAILib.errors import DicomOutputError

DEFAULT_CALLING_AE = "LESIONAI"
# C-STORE statuses that mean stored: success, and the warnings "coercion of data elements",
# "elements do not match SOP class", "elements discarded" (PS3.4 B.2.3)
STORED_STATUSES = {0x0000, 0xB000, 0xB006, 0xB007}
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # 16 characters at most, no backslash or control characters
_NODE = re.compile(r"^(?P<ae>[^@]+)@(?P<host>\[[^\]]+\]|[^:@]+):(?P<port>\d+)$")


@dataclass(frozen=True)
class DicomNode:
    """A DICOM node to send to: its AE title (the called AE title), host name or address, and TCP port."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> DicomNode:
        """``AE@host:port`` (an IPv6 address in brackets: ``PACS@[::1]:11112``) → node; one-line error otherwise."""
        match = _NODE.match(text.strip())
        if not match:
            raise DicomOutputError(f"--to expects AE@host:port, got {text!r}", hint="e.g. --to PACS@pacs.example:104")
        port = int(match["port"])
        if not 0 < port < 65536:
            raise DicomOutputError(f"port {port} of {text!r} is not a TCP port (1–65535)")
        return cls(check_ae_title(match["ae"], "called"), match["host"].strip("[]"), port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.ae_title}@{host}:{self.port}"


@dataclass(frozen=True)
class SentObject:
    """One object stored by the node: its file, SOP class name, SOPInstanceUID and C-STORE status."""

    path: Path
    sop_class: str
    sop_instance_uid: str
    status: int


def check_ae_title(title: str, which: str) -> str:
    """``title`` if it is a valid AE title (1–16 characters, no backslash or control characters)."""
    if not _AE_TITLE.match(title) or not title.strip():
        raise DicomOutputError(f"the {which} AE title '{title}' is not valid (1–16 characters, no backslash)")
    return title


def dicom_files(folder: str | Path) -> list[Path]:
    """The DICOM files (Part 10, with the ``DICM`` preamble) directly in ``folder``, in name order.

    Raises:
        DicomOutputError: ``folder`` is not a folder or holds no DICOM file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DicomOutputError("is not a folder", folder, "give the folder `lesionai analyze --dicom-out` wrote")
    files = [path for path in sorted(folder.iterdir()) if path.is_file() and _is_dicom(path)]
    if not files:
        raise DicomOutputError("holds no DICOM file", folder, "give the folder `lesionai analyze --dicom-out` wrote")
    return files


def _is_dicom(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(132)[128:] == b"DICM"


def send_files(
    paths: Sequence[str | Path],
    node: DicomNode,
    calling_ae: str = DEFAULT_CALLING_AE,
    timeout_s: float = 30.0,
    on_sent: Callable[[SentObject], None] | None = None,
) -> list[SentObject]:
    """C-STORE every file of ``paths`` to ``node`` over one association; ``on_sent`` is called after each.

    Raises:
        DicomOutputError: one line: no connection, association rejected or aborted, an object refused.
    """
    from pynetdicom import AE, evt

    check_ae_title(calling_ae, "calling")
    datasets = [(Path(path), pydicom.dcmread(path)) for path in paths]
    application = AE(ae_title=calling_ae)
    application.acse_timeout = application.dimse_timeout = application.network_timeout = timeout_s
    application.connection_timeout = timeout_s
    offered = {(str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID)) for _, d in datasets}
    for sop_class, syntax in sorted(offered):
        # the file's own transfer syntax alone first, so that a node accepting it gets the bytes as written;
        # a second context lets a node that wants Implicit VR (many do) pick it
        application.add_requested_context(sop_class, [syntax])
        application.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    connected = []  # whether TCP connected: pynetdicom reports a refused connection as an aborted association
    opened = (evt.EVT_CONN_OPEN, lambda event: connected.append(True))
    try:
        association = application.associate(node.host, node.port, ae_title=node.ae_title, evt_handlers=[opened])
    except OSError as error:  # the host name cannot be resolved
        raise DicomOutputError(f"cannot connect to {node}: {error.strerror or error}") from None
    if not association.is_established:
        raise DicomOutputError(_why_not_established(association, node, bool(connected)))
    sent = []
    try:
        for path, dataset in datasets:
            status = association.send_c_store(dataset)
            if "Status" not in status:
                raise DicomOutputError(
                    f"{node} did not answer the C-STORE of {path.name} (association aborted or timed out)", path
                )
            code = int(status.Status)
            if code not in STORED_STATUSES:
                raise DicomOutputError(f"{node} refused {path.name}: C-STORE status 0x{code:04X}", path)
            item = SentObject(path, dataset.SOPClassUID.name, str(dataset.SOPInstanceUID), code)
            sent.append(item)
            if on_sent is not None:
                on_sent(item)
    finally:
        if association.is_established:
            association.release()
    return sent


def _why_not_established(association, node: DicomNode, connected: bool) -> str:
    if not connected:
        return f"cannot connect to {node} (connection refused, no such host, or timed out)"
    if association.is_rejected:
        answer = association.acceptor.primitive
        reason = f": {answer.reason_str}" if answer is not None else ""
        return f"{node} rejected the association{reason} (check the called and calling AE titles)"
    return f"{node} aborted the association (it accepted none of the objects' SOP classes, or closed the connection)"
