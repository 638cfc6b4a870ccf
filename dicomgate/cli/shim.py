"""qr decode / qr url / login parse / login sessions / deletions: the HTTP shim's commands."""

from __future__ import annotations

import argparse

from ..config import ConfigError
from ..privacy import mask_mapping, mask_name
from ..shim import (
    ExamIdentity,
    FilmLinks,
    ParamError,
    TokenError,
    decode_login,
    parse_login_string,
)
from ..smcrypto import Sm2Decryptor
from .context import EXIT_USAGE, CommandError, load_config, open_app, print_json, print_table, when


def _links(args: argparse.Namespace) -> tuple[FilmLinks, str]:
    config = load_config(args)
    if config.qr is None:
        raise CommandError(f"{config.path} has no [qr] section: film_url and sm4_key are "
                           "needed", EXIT_USAGE)
    links = FilmLinks(config.qr.film_url, bytes.fromhex(config.qr.sm4_key.reveal()))
    return links, config.gateway.hospital_id


def cmd_qr_decode(args: argparse.Namespace) -> int:
    links, _ = _links(args)
    try:
        exam = links.decode(args.token)
    except TokenError as exc:
        raise CommandError(f"{exc} (is qr.sm4_key the key that made it?)") from None
    data = {"hospitalId": exam.hospital_id, "accessionNo": exam.accession_no,
            "modality": exam.modality}
    if args.json:
        print_json(data)
    else:
        for k, v in data.items():
            print(f"{k:12} {v}")
    return 0


def cmd_qr_url(args: argparse.Namespace) -> int:
    links, hospital = _links(args)
    print(links.url(ExamIdentity(args.hospital or hospital, args.accession,
                                 args.modality.upper())))
    return 0


def cmd_login_parse(args: argparse.Namespace) -> int:
    decryptor, hospital, note = None, "", None
    try:
        config = load_config(args)
        hospital = config.gateway.hospital_id
        if config.login is not None:
            decryptor = Sm2Decryptor(config.login.sm2_private_key.reveal(),
                                     config.login.sm2_mode)
        else:
            note = "no [login] section: doctorIdCardNo not decrypted"
    except ConfigError as exc:
        note = f"configuration unusable ({exc.lines[0]}): doctorIdCardNo not decrypted"
    raw = parse_login_string(args.string)
    try:
        fields = decode_login(args.string, hospital, decryptor)
    except ParamError as exc:
        for problem in exc.problems:
            print(f"  {problem}")
        raise CommandError(f"{len(exc.problems)} problem(s) in the login string; parameters "
                           f"found: {', '.join(raw) or 'none'}") from None
    data = {"hisUserId": fields.his_user_id, "type": fields.type,
            "hospitalId": fields.hospital_id, **fields.detail}
    if fields.id_card_no:
        data["doctorIdCardNo"] = fields.id_card_no
        data["sm2Mode"] = fields.sm2_mode
    if not args.reveal:
        data = mask_mapping(data)
    if note:
        data["note"] = note
    if args.json:
        print_json(data)
    else:
        for k, v in data.items():
            print(f"{k:15} {v}")
    return 0


def cmd_login_sessions(args: argparse.Namespace) -> int:
    app = open_app(args)
    rows = [{"id": s["id"], "hospital": s["hospital_id"], "account": s["his_user_id"],
             "state": s["state"], "doctor": mask_name(s["detail"].get("doctorName") or ""),
             "department": s["detail"].get("department"), "opened": when(s["opened_at"]),
             "closed": when(s["closed_at"]), "expires": when(s["expires_at"])}
            for s in app.store.sessions.list(state=args.state, limit=args.limit)]
    print_table(rows, ["id", "hospital", "account", "state", "doctor", "department", "opened",
                       "closed", "expires"])
    return 0


def cmd_deletions(args: argparse.Namespace) -> int:
    app = open_app(args)
    rows = [{"id": d.id, "hospital": d.hospital_id, "accession": d.accession_no,
             "operated": d.operate_time, "operator": mask_name(d.operator_name or ""),
             "studies": len(d.study_uids), "instances": len(d.sop_uids),
             "files_removed": d.files_removed, "requests": d.requests,
             "received": when(d.created_at)}
            for d in app.store.deletions.list(limit=args.limit)]
    if args.json:
        print_json(rows)
        return 0
    print_table(rows, ["id", "hospital", "accession", "operated", "operator", "studies",
                       "instances", "files_removed", "requests", "received"])
    return 0
