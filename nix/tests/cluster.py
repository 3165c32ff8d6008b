# The NixOS VM test of hosts/example.toml (nix/tests/cluster.nix): the
# scenarios of vm-tests/scenario, run against every host of the profile
# booted as a NixOS VM from services.correo, plus `outside`, the Internet
# (192.0.2.10, a Postfix that sends to the cluster and is the MX of
# foreign.example). The test driver defines one Machine per node, by name.
import json
import shlex

PROFILE = "/etc/correo/profile.toml"
ZONE = "correo.example"
cluster_hosts = [ns1, pw1, pw2, mx1, mx2, relay1, store1, store2, store3]


def correoctl(machine, *args, stdin=None):
    cmd = "correoctl " + " ".join(shlex.quote(a) for a in args[:2]) + " -profile " + PROFILE
    cmd += " " + " ".join(shlex.quote(a) for a in args[2:])
    if stdin is not None:
        cmd = "printf '%s\\n' " + shlex.quote(stdin) + " | " + cmd
    return machine.succeed(cmd)


def add_user(name, password):
    correoctl(mx1, "users", "add", "-password-stdin", name, stdin=password)


def storage_of(name):
    out = correoctl(mx1, "users", "show", "-json", name)
    return json.loads(out)["storage"]


def host(name):
    return {m.name: m for m in cluster_hosts}[name]


def maildir_count(user):
    # The hashed layout (first3: u/s/e/user) is the storage host's business:
    # find the user's Maildir wherever the layout put it.
    m = host(storage_of(user))
    out = m.succeed(
        f"find /var/lib/correo/mail -type d -name {shlex.quote(user)} -path '*/{user[0]}/*' "
        f"-exec sh -c 'ls \"$0\"/Maildir/new \"$0\"/Maildir/cur 2>/dev/null' {{}} \\; | grep -c . || true"
    )
    return int(out.strip() or "0")


def send_from_outside(rcpt, subject, body="hello from the Internet"):
    outside.succeed(
        "printf 'From: friend@foreign.example\\nTo: %s\\nSubject: %s\\n\\n%s\\n' "
        f"{shlex.quote(rcpt)} {shlex.quote(subject)} {shlex.quote(body)} | sendmail -f friend@foreign.example {shlex.quote(rcpt)}"
    )


def pop_fetch(user, password):
    script = (
        "import poplib, ssl, sys\n"
        "ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE\n"
        f"p = poplib.POP3('pop.{ZONE}', 110, timeout=20)\n"
        "p.stls(context=ctx)\n"
        "p.user(sys.argv[1]); p.pass_(sys.argv[2])\n"
        "print(len(p.list()[1]))\n"
        "p.quit()\n"
    )
    out = outside.succeed(f"python3 -c {shlex.quote(script)} {shlex.quote(user)} {shlex.quote(password)}")
    return int(out.strip())


def stop_daemon(machine, daemon):
    # Its sockets with it: a listening socket would start it again.
    machine.succeed(f"systemctl stop 'correo-{daemon}-*.socket' correo-{daemon}.service")


def start_daemon(machine, daemon):
    machine.succeed(f"systemctl reset-failed 'correo-{daemon}*' || true")
    machine.succeed(f"systemctl start $(systemctl list-unit-files --plain --no-legend 'correo-{daemon}-*.socket' | cut -d' ' -f1) correo-{daemon}.service")


start_all()

with subtest("every host boots and every correo unit is ready"):
    for m in cluster_hosts + [outside]:
        m.wait_for_unit("multi-user.target")
    for m in cluster_hosts:
        m.wait_for_unit("correo-nssd.service")
        failed = m.succeed("systemctl list-units --failed --plain --no-legend 'correo-*'").strip()
        assert failed == "", f"{m.name}: failed correo units: {failed}"
    pw1.wait_for_unit("correo-passwdd.service")
    pw2.wait_for_unit("correo-passwdd.service")
    for m in [store1, store2, store3]:
        m.wait_for_unit("correo-pdeliveryd.service")
        m.wait_for_unit("correo-pop3d.service")
    for m in [mx1, mx2]:
        m.wait_for_unit("correo-smtpd.service")
        m.wait_for_unit("correo-mailproxy.service")
    relay1.wait_for_unit("correo-smtpd.service")
    ns1.wait_for_unit("nsd.service")

with subtest("DNS pools as the Internet sees them"):
    mx = outside.succeed(f"dig +short MX {ZONE}")
    assert f"mx1.{ZONE}." in mx and f"mx2.{ZONE}." in mx, mx
    pop = outside.succeed(f"dig +short A pop.{ZONE}").split()
    assert sorted(pop) == ["10.77.0.10", "10.77.0.11"], pop
    relay = outside.succeed(f"dig +short A relay.{ZONE}").split()
    assert relay == ["10.77.0.20"], relay

with subtest("users added on the primary reach the secondary"):
    add_user("juan", "juan-pw")
    add_user("zoe", "zoe-pw")

    def in_step(_):
        rows = [json.loads(l) for l in correoctl(mx1, "passwd", "status", "-json").splitlines() if l.strip()]
        return len(rows) == 2 and rows[0]["seq"] == rows[1]["seq"] and rows[0]["epoch"] == rows[1]["epoch"]

    retry(in_step)

with subtest("NSS on a storage host: getent and id through libnss_correo and nssd"):
    m = host(storage_of("juan"))
    m.wait_until_succeeds("getent passwd juan | grep -q '^juan:'")
    m.succeed("id juan")
    m.fail("getent passwd no-such-user-here")

with subtest("Internet mail reaches the MX pool, the right storage host, and POP"):
    for i in range(4):
        send_from_outside("juan@correo.example", f"internet {i}")
        send_from_outside("zoe@correo.example", f"internet {i}")
    retry(lambda _: maildir_count("juan") == 4 and maildir_count("zoe") == 4)
    assert pop_fetch("juan", "juan-pw") == 4
    # Unknown users are refused at RCPT, not bounced later.
    outside.fail(f"swaks --silent 2 --server mx1.{ZONE} --from friend@foreign.example --to nobody-at-all@{ZONE}")

with subtest("every host's log is on the loghost"):
    for m in cluster_hosts:
        ns1.wait_until_succeeds(f"test -s /var/log/correo/hosts/{m.name}.log")
    ns1.wait_until_succeeds("grep -q 'msg=\"delivered\"' /var/log/correo/all.log")

with subtest("relay: submission with AUTH to a foreign MX; no open relay"):
    add_user("jimena", "jimena-pw")
    outside.succeed(
        f"swaks --server relay.{ZONE} --port 587 --tls --auth PLAIN --auth-user jimena --auth-password jimena-pw "
        f"--from jimena@{ZONE} --to friend@foreign.example --header 'Subject: from the relay'"
    )
    outside.wait_until_succeeds("grep -rqs 'from the relay' /var/spool/mail/friend /home/friend/Maildir")
    # Without AUTH, nobody relays through the cluster.
    outside.fail(f"swaks --silent 2 --server relay.{ZONE} --port 587 --tls --from x@foreign.example --to friend@foreign.example")
    outside.fail(f"swaks --silent 2 --server mx1.{ZONE} --from x@foreign.example --to friend@foreign.example")

with subtest("passwd failover: the primary down, deliveries go on through the secondary"):
    add_user("jorge", "jorge-pw")
    stop_daemon(pw1, "passwdd")
    send_from_outside("jorge@correo.example", "during the failover")
    retry(lambda _: maildir_count("jorge") == 1)
    assert pop_fetch("jorge", "jorge-pw") == 1
    start_daemon(pw1, "passwdd")
    pw1.wait_for_unit("correo-passwdd.service")
    add_user("alba", "alba-pw")
    retry(in_step)

with subtest("a storage host's delivery daemon down: mail waits on the MX, arrives once"):
    add_user("amalia", "amalia-pw")
    add_user("zaida", "zaida-pw")
    down = host(storage_of("amalia"))
    assert storage_of("zaida") != down.name, "amalia and zaida share a storage host"
    stop_daemon(down, "pdeliveryd")
    for i in range(3):
        send_from_outside("amalia@correo.example", f"while down {i}")
        send_from_outside("zaida@correo.example", f"while down {i}")
    retry(lambda _: maildir_count("zaida") == 3)
    assert maildir_count("amalia") == 0
    start_daemon(down, "pdeliveryd")
    # The MX retries on the profile's ladder (first retry after a minute).
    with down.nested("waiting for the MX queues to retry"):
        retry(lambda _: maildir_count("amalia") == 3, timeout=600)

with subtest("systemd restarts a killed daemon"):
    before = pw1.succeed("systemctl show -P NRestarts correo-passwdd.service").strip()
    pw1.succeed("systemctl kill --kill-whom=main --signal=KILL correo-passwdd.service")
    pw1.wait_until_succeeds(
        f"test $(systemctl show -P NRestarts correo-passwdd.service) -gt {before} && systemctl is-active correo-passwdd.service"
    )
