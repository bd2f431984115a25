"""Registry credentials and the distribution auth flow against small local registries (no network):
basic and bearer challenges, credential helpers, a wrong password, an untrusted CA, plain http
only where allowed, and the pull secret's content."""

from __future__ import annotations

import base64
import datetime
import http.server
import ipaddress
import json
import os
import ssl
import stat
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import pytest

from kubesweep.local import registry as reg
from kubesweep.run import pullsecret

USER, PASSWORD = "alice", "pa55-w0rd!"
EXISTING = "/v2/team/trainer/manifests/abc123"


# ------------------------------------------------------------------------------- certificates


def _ca_and_server(tmp: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.crt, server.crt, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"test CA {name}")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            # Python 3.13 verifies strictly (VERIFY_X509_STRICT): a certificate names its issuer's key
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    d = tmp / f"pki-{name}"
    d.mkdir()
    (d / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    return d / "ca.crt", d / "server.crt", d / "server.key"


# ----------------------------------------------------------------------------------- registries


class FakeRegistry:
    """A distribution-like registry: one manifest (EXISTING), and either basic auth, bearer
    tokens from its own /token realm, or none. It records what it was sent."""

    def __init__(self, tmp: Path, *, auth: str, tls: bool = True, anonymous_pull: bool = False):
        self.auth, self.anonymous_pull = auth, anonymous_pull
        self.seen: list[tuple[str, str, str]] = []  # (method, path, Authorization)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, code, headers=None, body=b""):
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _handle(self):
                given = self.headers.get("Authorization", "")
                outer.seen.append((self.command, self.path, given))
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/token":
                    q = urllib.parse.parse_qs(url.query)
                    outer.token_query = q
                    if given == "":
                        return self._reply(200, body=json.dumps({"token": "anonymous-token"}).encode())
                    if given != "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode():
                        return self._reply(401, body=b'{"errors":[{"code":"UNAUTHORIZED"}]}')
                    return self._reply(200, body=json.dumps({"access_token": "user-token"}).encode())
                if outer.auth == "basic":
                    if given != "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode():
                        return self._reply(401, {"WWW-Authenticate": 'Basic realm="test-registry"'})
                elif outer.auth == "bearer":
                    ok = given == "Bearer user-token" or (outer.anonymous_pull and given == "Bearer anonymous-token")
                    if not ok:
                        scope = f"repository:{url.path.split('/manifests/')[0][4:]}:pull" if "/manifests/" in url.path else ""
                        realm = f"{outer.scheme}://127.0.0.1:{outer.port}/token"
                        return self._reply(401, {"WWW-Authenticate":
                                                 f'Bearer realm="{realm}",service="test-registry",scope="{scope}"'})
                if url.path == "/v2/":
                    return self._reply(200, body=b"{}")
                if url.path == EXISTING:
                    return self._reply(200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
                return self._reply(404, body=b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')

            do_GET = do_HEAD = do_POST = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.scheme = "https" if tls else "http"
        self.name = f"127.0.0.1:{self.port}"
        self.certs = tmp / "certs.d"
        if tls:
            ca, cert, key = _ca_and_server(tmp, str(self.port))
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            self.ca = ca
            (self.certs / self.name).mkdir(parents=True)
            (self.certs / self.name / "ca.crt").write_bytes(ca.read_bytes())
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def client(self, creds=None, **kw) -> reg.Client:
        kw.setdefault("insecure", False)  # 127.0.0.1 is local: without this, TLS would not be verified
        return reg.Client(self.name, creds, certs_dirs=(self.certs,), **kw)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def registry(tmp_path):
    made = []

    def make(**kw) -> FakeRegistry:
        where = tmp_path / f"registry-{len(made)}"
        where.mkdir()
        made.append(FakeRegistry(where, **kw))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.fixture
def docker_config(tmp_path, monkeypatch):
    """A DOCKER_CONFIG of the test's own; write(config) sets its config.json."""
    d = tmp_path / "docker"
    d.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(d))

    def write(config: dict) -> Path:
        (d / "config.json").write_text(json.dumps(config))
        return d

    return write


def _auth(user=USER, password=PASSWORD) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


# ---------------------------------------------------------------------------------------- tests


def test_basic_flow_with_config_json_credentials(registry, docker_config):
    r = registry(auth="basic")
    docker_config({"auths": {r.name: {"auth": _auth()}}})
    creds = reg.credentials(r.name)
    assert creds == reg.Credentials(USER, PASSWORD, source=str(Path(os.environ["DOCKER_CONFIG"]) / "config.json"))
    assert PASSWORD not in repr(creds)
    c = r.client(creds)
    assert c.manifest_exists("team/trainer", "abc123") is True
    assert c.manifest_exists("team/trainer", "other") is False
    # the first request of each goes without credentials, the second answers the Basic challenge
    heads = [s for s in r.seen if s[0] == "HEAD"]
    assert heads[0][2] == "" and heads[1][2].startswith("Basic ")


def test_without_credentials_the_check_says_to_log_in(registry, docker_config):
    r = registry(auth="basic")
    docker_config({"auths": {}})
    with pytest.raises(reg.AuthError) as err:
        r.client(reg.credentials(r.name)).manifest_exists("team/trainer", "abc123")
    message = str(err.value)
    assert "\n" not in message and f"`docker login {r.name}`" in message and r.name in message


@pytest.mark.parametrize("auth", ["basic", "bearer"])
def test_a_wrong_password_is_one_line_naming_the_registry_and_docker_login(registry, docker_config, auth):
    r = registry(auth=auth)
    docker_config({"auths": {f"https://{r.name}": {"auth": _auth(password="wrong-secret")}}})
    with pytest.raises(reg.AuthError) as err:
        r.client(reg.credentials(r.name)).manifest_exists("team/trainer", "abc123")
    message = str(err.value)
    assert "\n" not in message and "wrong-secret" not in message and _auth(password="wrong-secret") not in message
    assert f"registry {r.name} refused the user {USER}" in message and f"`docker login {r.name}` again" in message


def test_bearer_flow_fetches_a_token_with_the_credentials_and_the_scope(registry, docker_config):
    r = registry(auth="bearer")
    docker_config({"auths": {r.name: {"auth": _auth()}}})
    c = r.client(reg.credentials(r.name))
    assert c.manifest_exists("team/trainer", "abc123") is True
    assert r.token_query == {"service": ["test-registry"], "scope": ["repository:team/trainer:pull"]}
    token_calls = [s for s in r.seen if s[1].startswith("/token")]
    assert token_calls and token_calls[0][2].startswith("Basic ")
    assert ("HEAD", EXISTING, "Bearer user-token") in r.seen
    assert c.manifest_exists("team/trainer", "missing") is False


def test_bearer_flow_anonymous(registry, docker_config):
    docker_config({})
    public = registry(auth="bearer", anonymous_pull=True)
    assert public.client(None).manifest_exists("team/trainer", "abc123") is True
    private = registry(auth="bearer")
    with pytest.raises(reg.AuthError, match=r"wants credentials .* run `docker login 127\.0\.0\.1:\d+`"):
        private.client(None).manifest_exists("team/trainer", "abc123")


def _helper(tmp_path: Path, monkeypatch, name: str, answer: dict | None) -> Path:
    """docker-credential-<name> on PATH: records its argv and stdin, answers ``answer`` (None: not found)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / f"{name}.log"
    script = bin_dir / f"docker-credential-{name}"
    reply = (f"print({json.dumps(json.dumps(answer))})" if answer is not None
             else "print('credentials not found in native keychain'); sys.exit(1)")
    script.write_text(f"#!{sys.executable}\nimport json, sys\n"
                      f"open({str(log)!r}, 'w').write(json.dumps([sys.argv[1:], sys.stdin.read()]))\n{reply}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_credential_helpers_cred_helpers_then_creds_store(registry, docker_config, tmp_path, monkeypatch):
    r = registry(auth="basic")
    log = _helper(tmp_path, monkeypatch, "fake", {"ServerURL": r.name, "Username": USER, "Secret": PASSWORD})
    _helper(tmp_path, monkeypatch, "empty", None)
    docker_config({"credsStore": "empty", "credHelpers": {r.name: "fake"}, "auths": {r.name: {}}})
    creds = reg.credentials(r.name)
    assert creds == reg.Credentials(USER, PASSWORD, source="docker-credential-fake")
    assert json.loads(log.read_text()) == [["get"], r.name]  # argv, and the server on stdin
    assert r.client(creds).manifest_exists("team/trainer", "abc123") is True
    # credsStore for every registry without a credHelpers entry; "not found" is no credentials
    docker_config({"credsStore": "fake"})
    assert reg.credentials("other.example:5000") == reg.Credentials(USER, PASSWORD, source="docker-credential-fake")
    docker_config({"credsStore": "empty"})
    assert reg.credentials(r.name) is None
    # Docker Hub is asked for under the key `docker login` writes
    docker_config({"credsStore": "fake"})
    reg.credentials("docker.io")
    assert json.loads(log.read_text())[1] == "https://index.docker.io/v1/"


def test_a_helper_that_is_missing_is_named(docker_config):
    docker_config({"credHelpers": {"gcr.io": "no-such-helper-xyz"}})
    with pytest.raises(reg.RegistryError, match="docker-credential-no-such-helper-xyz, which is not on PATH"):
        reg.credentials("gcr.io")


def test_an_untrusted_certificate_is_one_line_naming_certs_d(registry, tmp_path):
    r = registry(auth="none")
    (r.certs / r.name / "ca.crt").unlink()  # the system CAs alone do not know the test CA
    with pytest.raises(reg.RegistryError) as err:
        r.client(None).manifest_exists("team/trainer", "abc123")
    message = str(err.value)
    assert "\n" not in message and "certificate is not trusted" in message
    assert f"/etc/docker/certs.d/{r.name}/ca.crt" in message


def test_plain_http_only_for_local_or_insecure_registries(registry, tmp_path):
    r = registry(auth="none", tls=False)
    assert reg.Client(r.name).insecure  # 127.0.0.1: as dockerd, https first, then http
    assert reg.Client(r.name, certs_dirs=(tmp_path,)).manifest_exists("team/trainer", "abc123") is True
    with pytest.raises(reg.RegistryError, match="does not answer https .*insecure-registries"):  # https only
        r.client(None).manifest_exists("team/trainer", "abc123")
    assert not reg.Client("registry.example:5000").insecure
    daemon = tmp_path / "daemon.json"
    daemon.write_text(json.dumps({"insecure-registries": ["registry.example:5000", "10.1.0.0/16"]}))
    assert reg.daemon_insecure("registry.example:5000", daemon) and reg.daemon_insecure("10.1.2.3:5000", daemon)
    assert not reg.daemon_insecure("10.2.0.1:5000", daemon)


def test_image_names_split_as_docker_reads_them():
    assert reg.split_reference("localhost:5000/kubesweep/mnist:abc") == ("localhost:5000", "kubesweep/mnist")
    assert reg.split_reference("172.29.0.6:5443/team/x") == ("172.29.0.6:5443", "team/x")
    assert reg.split_reference("ghcr.io/org/trainer@sha256:00") == ("ghcr.io", "org/trainer")
    assert reg.split_reference("python:3.12") == ("docker.io", "library/python")
    assert reg.split_reference("me/trainer:1") == ("docker.io", "me/trainer")
    assert reg.split_reference("docker.io/me/trainer") == ("docker.io", "me/trainer")


def test_pull_secret_content():
    creds = reg.Credentials(USER, PASSWORD, source="x")
    data = json.loads(reg.dockerconfigjson("ghcr.io", creds))
    assert data == {"auths": {"ghcr.io": {"username": USER, "password": PASSWORD, "auth": _auth()}}}
    hub = json.loads(reg.dockerconfigjson("docker.io", creds))
    assert list(hub["auths"]) == ["https://index.docker.io/v1/"]
    secret = pullsecret.body("regcred", "ghcr.io", creds)
    assert secret["type"] == "kubernetes.io/dockerconfigjson" and secret["metadata"]["name"] == "regcred"
    assert json.loads(base64.b64decode(secret["data"][".dockerconfigjson"])) == data
    with pytest.raises(reg.AuthError, match="identity token"):
        reg.dockerconfigjson("myacr.azurecr.io", reg.Credentials("", identity_token="t", source="y"))


def test_kubesweep_image_with_a_wrong_password_prints_one_line(registry, docker_config, grid_file, tmp_path):
    """The command's view: exit 2 and one line on stderr before anything is built."""
    from .conftest import EXAMPLES

    r = registry(auth="basic", tls=False)  # 127.0.0.1: plain http is allowed
    docker_config({"auths": {r.name: {"auth": _auth(password="not-it")}}})
    grid = grid_file(f"""\
        name: wrong-pw
        image: {r.name}/team/trainer
        build: {{context: {EXAMPLES}}}
        command: [python3, /app/train.py, "${{epochs}}"]
        parameters: {{epochs: [1]}}
        objective: {{metric: accuracy}}
        """)
    proc = subprocess.run([sys.executable, "-m", "kubesweep.cli.app", "image", str(grid)], capture_output=True,
                          text=True, env={**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"registry {r.name} refused the user {USER}" in lines[0], proc.stderr
    assert "not-it" not in proc.stderr + proc.stdout


def test_dry_run_with_pull_secret_names_it_in_every_job_and_writes_no_credential(grid_file, tmp_path, docker_config):
    docker_config({"auths": {"localhost:5000": {"auth": _auth()}}})
    grid = grid_file()
    run = subprocess.run([sys.executable, "-m", "kubesweep.cli.app", "--project-dir", str(tmp_path / "p"), "sweep",
                          str(grid), "--dry-run", "--pull-secret", "regcred"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    import yaml

    jobs = sorted((tmp_path / "p" / "jobs" / "demo").rglob("*.yaml"))
    assert len(jobs) == 4
    for path in jobs:
        spec = yaml.safe_load(path.read_text())["spec"]["template"]["spec"]
        assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    written = "".join(p.read_text() for p in (tmp_path / "p").rglob("*") if p.is_file())
    assert PASSWORD not in written and _auth() not in written
    bad = subprocess.run([sys.executable, "-m", "kubesweep.cli.app", "--project-dir", str(tmp_path / "p"), "sweep",
                          str(grid), "--dry-run", "--pull-secret", "Reg_Cred"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "--pull-secret 'Reg_Cred' is not a Secret name (a DNS subdomain: lowercase letters, digits, '-' and '.')"]
