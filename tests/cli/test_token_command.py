"""`cac token`."""

import jwt

from api.auth import decode_token
from cli.main import main

SECRET = "cli-test-secret-that-is-long-enough-for-hs256"


def test_token_command_prints_token_with_subject_and_scopes(monkeypatch, capsys):
    monkeypatch.setenv("CAC_JWT_SECRET", SECRET)

    code = main(["token", "--sub", "alice", "--scope", "jobs:read billing:read", "--ttl", "60"])

    token = capsys.readouterr().out.strip()
    principal = decode_token(token, SECRET)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert code == 0
    assert principal.subject == "alice"
    assert principal.scopes == frozenset({"jobs:read", "billing:read"})
    assert claims["exp"] - claims["iat"] == 60


def test_token_command_defaults_to_job_and_billing_read_scopes(monkeypatch, capsys):
    monkeypatch.setenv("CAC_JWT_SECRET", SECRET)

    main(["token", "--sub", "alice"])

    principal = decode_token(capsys.readouterr().out.strip(), SECRET)
    assert principal.scopes == frozenset({"jobs:read", "jobs:write", "billing:read"})


def test_token_command_rejects_nonpositive_ttl(monkeypatch, capsys):
    monkeypatch.setenv("CAC_JWT_SECRET", SECRET)

    code = main(["token", "--sub", "alice", "--ttl", "0"])

    assert code == 1
    assert capsys.readouterr().err == "error: ttl_seconds must be positive, got 0\n"
