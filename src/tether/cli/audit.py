"""``tether audit ...``: query, verify, prove and export the audit trail.

Thin over :class:`tether.audit.AuditLog`; only Typer is imported at start-up. ``verify-inclusion``
and ``verify-consistency`` need no project: they check a proof against a checkpoint and a public
key, as a third party would.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tether.cli.output import emit_json, fail, handled

if TYPE_CHECKING:
    from tether.audit.log import AuditLog
    from tether.audit.note import Verifier

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
KeyOpt = Annotated[
    str | None,
    typer.Option("--key", help="Verifier key (name+keyid+key) or a file holding it; default: this project's."),
]

audit_app = typer.Typer(
    name="audit",
    help="The audit trail: which version decided each request, tamper-evidently.",
    no_args_is_help=True,
)


def _directory(ctx: typer.Context) -> str:
    return ctx.find_root().params.get("directory") or "."


def _open(ctx: typer.Context, create: bool = False) -> AuditLog:
    from tether.audit.log import AuditLog

    return AuditLog.open(_directory(ctx), create=create, check_versions=False)


def _parse_moment(option: str, text: str, end_of_day: bool = False) -> _dt.datetime:
    """A date (``2026-03-01``) or an ISO date-time; naive values are UTC."""
    try:
        if len(text) == 10:
            day = _dt.date.fromisoformat(text)
            moment = _dt.datetime(day.year, day.month, day.day, tzinfo=_dt.UTC)
            return moment + _dt.timedelta(days=1) if end_of_day else moment
        moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        from tether.errors import UsageError

        raise UsageError(f"{option} '{text}': expected a date YYYY-MM-DD or an ISO date-time (UTC)") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=_dt.UTC)


def _verifier(ctx: typer.Context, key: str | None) -> Verifier:
    from tether.audit.keys import load_verifier, read_verifier_argument

    if key:
        return read_verifier_argument(key)
    from tether.project.core import DOT_DIR
    from tether.project.projectfile import PROJECT_FILE

    start = Path(_directory(ctx)).resolve()
    for folder in [start, *start.parents]:
        if (folder / PROJECT_FILE).is_file() and (folder / DOT_DIR).is_dir():
            return load_verifier(folder / DOT_DIR)
    from tether.errors import UsageError

    raise UsageError("--key: outside a tether project, give the log's verifier key (tether audit key prints it)")


def _read(option: str, path: str) -> str:
    from tether.errors import UsageError

    try:  # bytes as they are: universal newlines would turn a CRLF note (malformed) into a valid one
        return (sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()).decode("utf-8")
    except FileNotFoundError as exc:
        raise UsageError(f"{option} {path}: no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{option} {path}: cannot read ({exc})") from exc


def _proof_file(path: str, expected_type: str) -> dict[str, Any]:
    from tether.errors import UsageError

    text = _read("PROOF_FILE", path)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{path}: not JSON ({exc.msg})") from exc
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if not isinstance(data, dict) or data.get("type") != expected_type:
        raise UsageError(f"{path}: not a {expected_type} (as `tether audit prove --json` writes)")
    return data


_HEX_HASH = re.compile(r"[0-9a-f]{64}")


def _hashes(data: dict[str, Any], key: str, path: str) -> list[bytes]:
    from tether.errors import UsageError

    items = data.get(key)
    # exactly 64 lowercase hex characters each: bytes.fromhex would also take spaces and capitals
    if not isinstance(items, list) or not all(isinstance(item, str) and _HEX_HASH.fullmatch(item) for item in items):
        raise UsageError(f"{path}: field '{key}' must be a list of hex hashes (64 lowercase hex characters each)")
    return [bytes.fromhex(item) for item in items]


def _print_records(records: list[Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from tether.cli.output import console

    if not records:
        typer.echo("no records")
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("leaf", "time (UTC)", "request", "subject", "alias", "version", "status", "latency", "proof"):
        table.add_column(column, no_wrap=column in ("leaf", "time (UTC)", "version", "latency", "proof"),
                         justify="right" if column == "leaf" else "left")
    # proof: ok (leaf hash and inclusion in the latest signed checkpoint verified), new (after that
    # checkpoint: leaf hash only), TAMPERED (the error line after the table says why)
    proofs = {"ok": "ok", "new": "new", "tampered": "[bold red]TAMPERED[/bold red]"}
    for record in records:
        status = record.status if record.status == "ok" else f"error: {record.error_type}"
        table.add_row(str(record.index), record.time, escape(record.request_id), escape(record.subject or "-"), escape(record.alias),
                      record.version_id[:12], escape(status), f"{record.latency_ms:.1f} ms", proofs.get(record.proof or "", "-"))
    console().print(table)


def _expand(ctx: typer.Context, version_ids: list[str]) -> dict[str, Any]:
    from tether.project.core import Project

    shown: dict[str, Any] = {}
    with Project.open(_directory(ctx)) as project:
        for version_id in version_ids:
            info, snapshots, environment = project.show(version_id)
            shown[version_id] = (info, snapshots, environment)
    return shown


@audit_app.command()
def query(
    ctx: typer.Context,
    request: Annotated[str | None, typer.Option("--request", help="One request ID.")] = None,
    subject: Annotated[str | None, typer.Option("--subject", help="A subject (customer, case...).")] = None,
    at: Annotated[str | None, typer.Option("--at", help="One day (UTC), YYYY-MM-DD.")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="From this date or date-time (UTC).")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Up to this date (inclusive) or date-time (exclusive).")] = None,
    version: Annotated[str | None, typer.Option("--version", help="Every request a version served (any reference).")] = None,
    expand: Annotated[bool, typer.Option("--expand", help="Also show each version's full composite manifest.")] = False,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most N records.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Which version decided a request: by request ID, subject and day, time range or version.

    Every record shown is checked first (its leaf hash; its inclusion in the latest signed
    checkpoint): a record that fails is flagged TAMPERED, and the command exits 1 naming it."""
    with handled(as_json):
        from tether.audit.log import TamperedRecordsError
        from tether.errors import UsageError

        if request is None and subject is None and version is None and at is None and from_ is None and to is None:
            raise UsageError("query: give --request ID, --subject S [--at DATE | --from/--to], --version REF or --from/--to")
        if request is not None and (subject or version or at or from_ or to):
            raise UsageError("--request: a request ID is looked up alone (no --subject/--version/--at/--from/--to)")
        if at is not None and (from_ or to):
            raise UsageError("--at: give either --at DATE or --from/--to, not both")
        start = end = None
        if at is not None:
            # --at takes a day only: _parse_moment's message would offer a date-time too
            try:
                day = _dt.date.fromisoformat(at) if len(at) == 10 else None
            except ValueError:
                day = None
            if day is None:
                raise UsageError(f"--at '{at}': expected a date YYYY-MM-DD (a UTC day)")
            start = _dt.datetime(day.year, day.month, day.day, tzinfo=_dt.UTC)
            end = start + _dt.timedelta(days=1)
        if from_ is not None:
            start = _parse_moment("--from", from_)
        if to is not None:
            end = _parse_moment("--to", to, end_of_day=True)
        if start and end and end <= start:
            raise UsageError("--to: must be after --from")
        version_id = None
        if version is not None:
            from tether.project.core import Project

            with Project.open(_directory(ctx)) as project:
                version_id = project.resolve(version)
        failed: TamperedRecordsError | None = None
        try:
            log = _open(ctx)
        except UsageError as exc:
            if "no audit log yet" not in str(exc):
                raise
            records: list[Any] = []
        else:
            with log:
                try:
                    records = log.query(request_id=request, subject=subject, version_id=version_id, start=start, end=end, limit=limit)
                except TamperedRecordsError as exc:  # shown, flagged, then named on stderr (exit 1)
                    records, failed = exc.records, exc
        # the versions to expand: not those only a record that failed its check names (it may name any)
        trusted = [record.version_id for record in records if record.proof != "tampered"]
        versions = sorted(set(trusted), key=trusted.index)
        shown = _expand(ctx, versions) if expand and versions else {}
        if as_json:
            data: dict[str, Any] = {"records": [record.to_json() for record in records]}
            if expand:
                data["versions"] = {
                    vid: {**info.to_json(), "snapshots": {n: s.to_json() for n, s in snaps.items()}, "environment_capture": env}
                    for vid, (info, snaps, env) in shown.items()
                }
            if failed is not None:
                data.update({"error": str(failed), "exit_code": 1})
            emit_json(data)
        else:
            _print_records(records)
            if shown:
                from tether.cli.render import render_show

                for info, snapshots, environment in shown.values():
                    typer.echo("")
                    render_show(info, snapshots, environment)
        if failed is not None:
            sys.stderr.write(f"tether: error: {failed}\n")
            raise typer.Exit(1)


@audit_app.command()
def verify(
    ctx: typer.Context,
    against: Annotated[
        list[str] | None,
        typer.Option("--against", help="An exported checkpoint the log must still match (repeatable)."),
    ] = None,
    key: KeyOpt = None,
    full: Annotated[bool, typer.Option("--full", help="Re-hash every record, not only those since the checkpoint verified last.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check the records since the last verified checkpoint and every checkpoint (--full: every record); exit 1 naming the first bad leaf."""
    with handled(as_json):

        from tether.audit.store import AuditDataError, AuditStoreError

        verifier = _verifier(ctx, key)
        try:
            log = _open(ctx)
        except AuditDataError as exc:  # the log cannot even be opened: its meta table was changed
            fail(f"audit verify failed: {exc}", 1, as_json)
        except AuditStoreError as exc:
            if exc.damaged:
                fail(f"audit verify failed: {exc}", 1, as_json)
            if "no audit log yet" not in str(exc):
                raise
            if against:
                fail(f"audit verify failed: no audit log, but {against[0]} says one existed (deleted)", 1, as_json)
            if as_json:
                emit_json({"ok": True, "tree_size": 0, "records": 0, "problems": [], "warnings": ["no audit log yet"]})
            else:
                typer.echo("audit verify: no audit log yet (nothing recorded)")
            return
        from tether.cli.output import make_progress

        update, close = make_progress()
        with log:
            try:
                report = log.verify(against=list(against or []), verifier=verifier, progress=None if as_json else update, full=full)
            finally:
                close()
        if as_json:
            emit_json(report.to_json())
        else:
            for problem in report.problems:
                typer.echo(f"error: {problem.message}", err=True)
            for warning in report.warnings:
                typer.echo(f"warning: {warning}", err=True)
            for item in report.erased:
                typer.echo(f"payload erased: leaf {item['leaf']} {item['field']} on {item['time']} ({item['reason']})")
            covered = f"latest checkpoint {report.latest_checkpoint}" if report.latest_checkpoint is not None else "no checkpoint yet"
            tail = f", {report.uncovered} records not yet checkpointed" if report.uncovered else ""
            purged = f", purged below leaf {report.purged_to}" if report.purged_to else ""
            exported = f", {len(report.exported)} exported checkpoint(s) checked" if report.exported else ""
            state = "ok" if report.ok else "FAILED"
            plural = "" if report.checkpoints == 1 else "s"
            how = (f"incremental: {report.records_read} new records re-hashed from checkpoint {report.verified_from}"
                   if report.mode == "incremental" else "full")
            typer.echo(f"audit verify: {report.records} records (tree size {report.tree_size}{purged}), {report.checkpoints} "
                       f"checkpoint{plural} ({covered}{tail}){exported}, {report.payloads_checked} payloads checked ({how}): {state}")
        if not report.ok:
            first = report.first_problem()
            message = first.message if first else ""
            where = ""
            if report.first_bad_leaf is not None:
                where = f"first bad leaf {report.first_bad_leaf}: "
                message = message.removeprefix(f"leaf {report.first_bad_leaf}: ")  # named once
            sys.stderr.write(f"tether: error: audit verify failed: {where}{message}\n")
            raise typer.Exit(1)


@audit_app.command()
def prove(
    ctx: typer.Context,
    request_id: Annotated[str | None, typer.Argument(help="The request to prove is in the log.")] = None,
    index: Annotated[int | None, typer.Option("--index", min=0, help="Prove the record at this leaf index (one of a request ID recorded more than once).")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Prove instead that the log extends this older checkpoint (file).")
    ] = None,
    output: Annotated[str | None, typer.Option("-o", "--output", help="Also write the proof (JSON) to this file.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """An inclusion proof for a request (or a consistency proof with --since) against the latest checkpoint."""
    with handled(as_json):
        from tether.errors import UsageError

        if since is not None and (request_id is not None or index is not None):
            raise UsageError("--since: proves consistency between checkpoints; give no REQUEST_ID or --index")
        if since is None and request_id is None and index is None:
            raise UsageError("prove: give a REQUEST_ID, --index N or --since CHECKPOINT_FILE")
        with _open(ctx) as log:
            # one proof per run: a request ID recorded more than once is refused, naming the leaves for --index
            data: Any = (log.prove_consistency(_read("--since", since)) if since is not None
                         else log.prove(request_id, index, single=True))
        if output:
            proof = data if isinstance(data, dict) else data[0]
            try:
                Path(output).write_text(json.dumps(proof, indent=2) + "\n", encoding="utf-8")
            except OSError as exc:
                raise UsageError(f"--output {output}: cannot write ({exc.strerror or exc})") from exc
        if as_json:
            emit_json(data)
            return
        for proof in [data] if isinstance(data, dict) else data:
            if proof["type"].startswith("tether.consistency"):
                typer.echo(f"consistency proof: tree size {proof['old_size']} -> {proof['new_size']}")
            else:
                typer.echo(f"inclusion proof: request {proof['request_id']}, leaf {proof['leaf_index']} of tree size {proof['tree_size']}")
                typer.echo(f"leaf hash  {proof['leaf_hash']}")
            for number, item in enumerate(proof["proof"]):
                typer.echo(f"  [{number}] {item}")
            note = proof.get("checkpoint") or proof.get("new_checkpoint")
            typer.echo("checkpoint:\n" + note.rstrip("\n"))


@audit_app.command("verify-inclusion")
def verify_inclusion_command(
    ctx: typer.Context,
    proof_file: Annotated[str, typer.Argument(help="The proof, as `tether audit prove --json` wrote it ('-' for stdin).")],
    checkpoint: Annotated[
        str | None, typer.Option("--checkpoint", help="Verify against this checkpoint file instead of the one in the proof.")
    ] = None,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check an inclusion proof with nothing but the proof, a checkpoint and the log's public key (RFC 9162 2.1.3.2)."""
    with handled(as_json):
        from tether.audit.merkle import ProofError, leaf_hash, verify_inclusion
        from tether.audit.note import NoteError, open_checkpoint
        from tether.audit.records import Record
        from tether.errors import UsageError

        data = _proof_file(proof_file, "tether.inclusion-proof/1")
        verifier = _verifier(ctx, key)
        note = _read("--checkpoint", checkpoint) if checkpoint else data.get("checkpoint", "")
        try:
            signed = open_checkpoint(note, verifier)
        except NoteError as exc:
            fail(f"verify-inclusion failed: checkpoint: {exc}", 1, as_json)
        index = data.get("leaf_index")
        if type(index) is not int or index < 0:  # JSON true, "1" or 1.9 are not leaf indexes
            raise UsageError(f"{proof_file}: field 'leaf_index' must be a whole number, 0 or more")
        try:
            leaf = str(data["leaf"]).encode("utf-8")
            record = Record.from_leaf(leaf)
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"{proof_file}: the proof's leaf is not a tether audit record ({exc})") from exc
        if record.index != index:
            fail(f"verify-inclusion failed: the leaf is record {record.index}, the proof claims leaf {index}", 1, as_json)
        try:
            verify_inclusion(index, signed.size, leaf_hash(leaf), _hashes(data, "proof", proof_file), signed.root)
        except ProofError as exc:
            fail(f"verify-inclusion failed: {exc}", 1, as_json)
        result = {"ok": True, "request_id": record.request_id, "leaf_index": index, "tree_size": signed.size,
                  "origin": signed.origin, "version_id": record.version_id, "alias": record.alias, "time": record.time}
        if as_json:
            emit_json(result)
        else:
            typer.echo(f"inclusion verified: request {record.request_id} (version {record.version_id[:12]} via "
                       f"{record.alias}, {record.time}) is leaf {index} of {signed.origin} at tree size {signed.size}")


@audit_app.command("verify-consistency")
def verify_consistency_command(
    ctx: typer.Context,
    proof_file: Annotated[str, typer.Argument(help="The proof, as `tether audit prove --since FILE --json` wrote it.")],
    old: Annotated[str | None, typer.Option("--old", help="The older checkpoint file (default: the one in the proof).")] = None,
    new: Annotated[str | None, typer.Option("--new", help="The newer checkpoint file (default: the one in the proof).")] = None,
    key: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check that a newer checkpoint extends an older one (RFC 9162 2.1.4.2), from the proof and the two checkpoints alone."""
    with handled(as_json):
        from tether.audit.merkle import ProofError, verify_consistency
        from tether.audit.note import NoteError, open_checkpoint

        data = _proof_file(proof_file, "tether.consistency-proof/1")
        verifier = _verifier(ctx, key)
        old_note = _read("--old", old) if old else data.get("old_checkpoint", "")
        new_note = _read("--new", new) if new else data.get("new_checkpoint", "")
        try:
            first = open_checkpoint(old_note, verifier)
            second = open_checkpoint(new_note, verifier, first.origin)
        except NoteError as exc:
            fail(f"verify-consistency failed: checkpoint: {exc}", 1, as_json)
        try:
            verify_consistency(first.size, second.size, _hashes(data, "proof", proof_file), first.root, second.root)
        except ProofError as exc:
            fail(f"verify-consistency failed: {exc}", 1, as_json)
        if as_json:
            emit_json({"ok": True, "origin": first.origin, "old_size": first.size, "new_size": second.size})
        else:
            typer.echo(f"consistency verified: {first.origin} at tree size {second.size} extends tree size {first.size}")


@audit_app.command()
def checkpoint(
    ctx: typer.Context,
    export: Annotated[str | None, typer.Option("--export", help="Also write the checkpoint to this file, for safekeeping.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Sign a checkpoint (C2SP tlog-checkpoint, Ed25519) of the log as it is now."""
    with handled(as_json):
        with _open(ctx, create=True) as log:
            signed = log.export_checkpoint(export) if export else log.checkpoint()
        if as_json:
            emit_json({**signed.to_json(), "exported_to": export})
            return
        typer.echo(signed.note, nl=False)
        state = "signed" if signed.created else "unchanged since the last checkpoint"
        typer.echo(f"checkpoint of tree size {signed.size}: {state}" + (f"; exported to {export}" if export else ""), err=True)


@audit_app.command()
def key(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Print the log's verifier key (give it to whoever checks your checkpoints)."""
    with handled(as_json):
        verifier = _verifier(ctx, None)
        if as_json:
            emit_json({"verifier_key": verifier.encode(), "name": verifier.name, "key_id": f"{verifier.key_id:08x}"})
        else:
            typer.echo(verifier.encode())


@audit_app.command()
def purge(
    ctx: typer.Context,
    before: Annotated[str | None, typer.Option("--before", help="Purge records older than this date (default: the retention policy).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be purged.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete records past retention; the tree stays verifiable and the purge is itself recorded."""
    with handled(as_json):
        moment = _parse_moment("--before", before) if before else None
        with _open(ctx) as log:
            report = log.purge(before=moment, dry_run=dry_run)
        if as_json:
            emit_json(report.to_json())
            return
        verb = "would purge" if dry_run else "purged"
        if report.purged == 0:
            typer.echo(f"purge: nothing older than {report.before} at the start of the log")
        else:
            typer.echo(f"purge: {verb} {report.purged} records (leaves {report.start}..{report.end - 1}) older than {report.before}"
                       + ("" if dry_run else f"; checkpoint of size {report.checkpoint_size} covers them, purge recorded as leaf {report.record_index}"))
        if report.kept_older:
            typer.echo(f"purge: {report.kept_older} older records were kept: a newer record precedes them in the log")


@audit_app.command()
def erase(
    ctx: typer.Context,
    request_id: Annotated[str, typer.Argument(help="The request whose payloads to erase.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (e.g. the data-subject request's reference).")],
    field: Annotated[str | None, typer.Option("--field", help="input or output (default: both).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Erase a request's input/output content and salt; the record and every proof stay valid."""
    with handled(as_json):
        from tether.errors import UsageError

        if field not in (None, "input", "output"):
            raise UsageError(f"--field '{field}': expected input or output")
        with _open(ctx) as log:
            report = log.erase(request_id, reason, (field,) if field else ("input", "output"))
        if as_json:
            emit_json(report.to_json())
            return
        if report.erased:
            kept = "" if report.payloads else " (no payload content was kept, only the salts of its digests)"
            typer.echo(f"erased {report.payloads} payload(s) and {report.salts} salt(s) of request {request_id}{kept}")
        earlier: dict[tuple[str, str], list[str]] = {}
        for item in report.already_erased:
            earlier.setdefault((item["time"], item["reason"]), []).append(f"leaf {item['leaf_index']} {item['field']}")
        for (when, why), items in earlier.items():
            what = "" if len(earlier) == 1 and not report.erased else f"{', '.join(items)} "
            typer.echo(f"request {request_id}: {what}already erased on {when}: {why}")
        if not report.erased and not report.already_erased:
            typer.echo(f"request {request_id} has no payload to erase")


@audit_app.command()
def export(
    ctx: typer.Context,
    jsonl: Annotated[str, typer.Option("--jsonl", help="Write JSON Lines here ('-' for stdout).")],
    from_: Annotated[str | None, typer.Option("--from", help="From this date or date-time (UTC).")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Up to this date (inclusive) or date-time (exclusive).")] = None,
    payloads: Annotated[bool, typer.Option("--payloads", help="Include the kept input/output content.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Archive records as JSON Lines: each line holds the canonical leaf, so it can be re-verified."""
    with handled(as_json):
        from tether.errors import UsageError

        start = _parse_moment("--from", from_) if from_ else None
        end = _parse_moment("--to", to, end_of_day=True) if to else None
        if start and end and end <= start:  # as query refuses it, rather than an empty archive
            raise UsageError("--to: must be after --from")
        with _open(ctx) as log:
            if jsonl == "-":
                count = log.export_jsonl(sys.stdout, start, end, payloads)
            else:
                try:
                    with open(jsonl, "w", encoding="utf-8", newline="\n") as handle:
                        count = log.export_jsonl(handle, start, end, payloads)
                except OSError as exc:
                    raise UsageError(f"--jsonl {jsonl}: cannot write ({exc.strerror or exc})") from exc
        if jsonl != "-":
            if as_json:
                emit_json({"records": count, "path": jsonl})
            else:
                typer.echo(f"exported {count} records to {jsonl}")


def register(app: typer.Typer) -> None:
    """Add ``tether audit ...`` to ``app``."""
    app.add_typer(audit_app, name="audit", rich_help_panel="Audit")
