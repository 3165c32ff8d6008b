# correo: the two entry points README.md promises, and their parts.
#   make dev   — run the dev cluster described by hosts/dev.toml
#   make test  — every test: formatting, vet, go test -race, the Nix checks
#   make image PROFILE=hosts/example.toml HOST=store1 — one host's bootable disk image
SHELL := /bin/bash
GO ?= go
export CGO_ENABLED ?= 1

.PHONY: all build nss nss-bench passwd-bench scale-bench lmtp-bench pop3-bench imap-bench login-bench move-bench bench deps test fmt-check vet gotest nix-check dev rootfs image clean

all: build

build: nss
	$(GO) build -o bin/ ./src/cmd/...

# The NSS module, libnss_correo.so.2 (C, gcc): bin/ like the programs.
nss:
	$(MAKE) -C src/nss OUT=$(CURDIR)/bin

# getpwnam at 1 M users: the NSS module + nssd next to glibc's files
# backend (root: mount namespaces). Prints figures, asserts nothing.
nss-bench: nss
	CORREO_NSS_LIB=$(CURDIR)/bin/libnss_correo.so.2 $(GO) test -run '^$$' -bench NSSGetpwnam -benchtime 1x ./src/nss/nsstest

# passwdd at 1 M users: lookups/s over UDP next to a plain UDP echo server
# doing the same client work, import and restart times, and the worst
# query latency during a full reload (root). Prints figures.
passwd-bench: deps
	$(GO) test -run '^$$' -bench Passwdd -benchtime 1x -timeout 1h ./src/cmd/passwdd

# LMTP deliveries/s of 4 KB messages: pdeliveryd next to Dovecot's LMTP and
# the disk's bare write+fsync+rename ceiling (root: private Dovecot). Set
# CORREO_BENCH_DIR to a directory on the mail disk. Prints a table.
lmtp-bench: deps
	$(GO) test -run '^$$' -bench LMTP -benchtime 1x ./src/cmd/pdeliveryd

# POP3 on a 2 000 x 11 KB mailbox: login+STAT+LIST (median of 20),
# logins/s with 8 clients, RETR throughput; pop3d direct, through
# mailproxy, and Dovecot stock and high-performance (root). Prints a table.
pop3-bench: deps
	$(GO) test -run '^$$' -bench POP3 -benchtime 1x ./src/cmd/pop3d

# IMAP on the same 2 000 x 11 KB mailbox (issue 16): LOGIN+SELECT of it,
# UID FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE ENVELOPE), IDLE latency
# after a delivery, and memory per idle session for CORREO_BENCH_IDLE
# (10 000) sessions in IDLE; imapd direct, through mailproxy, and Dovecot
# stock and high-performance (root). About 20 minutes on 2 cores, most of
# it Dovecot forking 2 x 10 000 imap processes. Prints a Markdown table.
imap-bench: deps
	$(GO) test -run '^$$' -bench IMAP -benchtime 1x -timeout 2h ./src/cmd/imapd

# POP3 logins/s through mailproxy → pop3d for CORREO_BENCH_USERS (10 000)
# users hashed at bcrypt cost 10: cold (each user once) and warm (passwdd's
# credentials cache) with 8 and 64 clients, and CORREO_BENCH_STORM (2 000)
# uncached logins at once; the same against Dovecot (root). The hashes are
# made once and kept in CORREO_BENCH_DIR (or the temporary directory).
# Long: about an hour at full size on 2 cores. Prints a table.
login-bench: deps
	$(GO) test -run '^$$' -bench '^BenchmarkLogins$$' -benchtime 1x -timeout 4h ./src/cmd/mailproxy

# End-to-end messages/s (SMTP → queue → LMTP → Maildir, fsync on), 4 KB
# messages, 20 sessions driven by Postfix's smtp-source: smtp-sink alone,
# correo, correo with SPF/DKIM/DMARC checks, the same plus rspamd as
# milter, and a private Postfix delivering into Maildirs, in one run
# (root). CORREO_BENCH_DIR: the disk to measure; CORREO_BENCH_MESSAGES:
# messages per target (2000). Prints a table.
smtp-bench: deps
	$(GO) test -run '^$$' -bench SMTP -benchtime 1x ./src/cmd/smtpd

# A 2 000-message mailbox moved between two storage hosts of a namespace
# cluster with correoctl mailbox move, next to rsync -a of the same
# Maildir between the same hosts, and the time the user saw it frozen.
# Root.
move-bench: deps build
	unshare -n -m --propagation private sh -c 'ip link set lo up && exec "$$0" "$$@"' \
		env CORREO_BIN=$(CURDIR)/bin CORREO_NSS_LIB=$(CURDIR)/bin/libnss_correo.so.2 \
		$(GO) test -run '^$$' -bench MailboxMove -benchtime 1x ./vm-tests/netns

# Every benchmark above, each with the baselines it measures in the same
# run, then one Markdown table of their headline figures (figure, correo,
# baseline, ratio, target: internal/benchfig) from .bench/figures.jsonl.
# Root; about 20 minutes on 2 cores. Two run smaller than on their own:
# imap-bench with 2 000 idle sessions (CORREO_BENCH_IDLE), login-bench with
# 1 000 users, storms of 500 and 500 Dovecot users (CORREO_BENCH_USERS,
# CORREO_BENCH_STORM, CORREO_BENCH_DOVECOT_USERS); set them to override.
bench: deps build
	mkdir -p .bench && rm -f .bench/figures.jsonl
	status=0; CORREO_BENCH_FIGURES=$(CURDIR)/.bench/figures.jsonl CORREO_BENCH_IDLE=$${CORREO_BENCH_IDLE:-2000} \
		CORREO_BENCH_USERS=$${CORREO_BENCH_USERS:-1000} CORREO_BENCH_STORM=$${CORREO_BENCH_STORM:-500} \
		CORREO_BENCH_DOVECOT_USERS=$${CORREO_BENCH_DOVECOT_USERS:-500} \
		$(MAKE) -k passwd-bench nss-bench lmtp-bench smtp-bench pop3-bench imap-bench login-bench move-bench || status=$$?; \
	$(GO) run ./internal/benchfig/cmd/benchtable .bench/figures.jsonl; exit $$status

# How costs grow: passwdd and getpwnam at 10 k, 100 k and 1 M users
# (CORREO_SCALE_USERS), a storage host's POP3, IMAP, LMTP and quota scan
# at mailboxes of 100, 2 000 and 50 000 messages (CORREO_SCALE_MAILBOX),
# into docs/scaling.dat, plotted by gnuplot into docs/scaling.png (root;
# about 10 minutes on 2 cores).
scale-bench: deps build
	mkdir -p .bench && rm -f .bench/scale.dat
	CORREO_SCALE_DATA=$(CURDIR)/.bench/scale.dat $(GO) test -run '^$$' -bench PasswdScale -benchtime 1x -timeout 1h ./src/cmd/passwdd
	CORREO_SCALE_DATA=$(CURDIR)/.bench/scale.dat CORREO_NSS_LIB=$(CURDIR)/bin/libnss_correo.so.2 \
		$(GO) test -run '^$$' -bench NSSScale -benchtime 1x -timeout 1h ./src/nss/nsstest
	CORREO_SCALE_DATA=$(CURDIR)/.bench/scale.dat CORREO_BIN=$(CURDIR)/bin \
		$(GO) test -run '^$$' -bench StorageScale -benchtime 1x -timeout 1h ./src/cmd/pop3d
	cp .bench/scale.dat docs/scaling.dat
	gnuplot -e "data='docs/scaling.dat'" docs/scaling.gp > docs/scaling.png

deps:
	@bash .ci/deps

# CORREO_STRICT turns "this test needs rsyslogd/named-checkzone/root" from a
# skip into a failure: under the test command nothing is silently skipped.
test: deps fmt-check vet gotest nix-check

fmt-check:
	@bad=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); \
	if [ -n "$$bad" ]; then echo "gofmt needed on:"; echo "$$bad"; exit 1; fi; \
	echo "gofmt: ok"

vet:
	$(GO) vet ./...

# The NSS tests load the module `make nss` built (without CORREO_NSS_LIB
# they build their own copy, so plain `go test ./...` works too).
#
# The tests run in a private network namespace that has only loopback
# (and a private mount namespace): a dial toward any address outside it —
# a profile's 10.77.0.x from the wrong namespace, a forgotten real host —
# fails with "network is unreachable" instead of leaving the machine. The
# namespace clusters boot inside it. Modules are downloaded, and the
# Debian rootfs the booted hosts run on is built (once, from the apt
# mirror), first, since nothing can be fetched from inside.
gotest: nss rootfs
	$(GO) mod download
	unshare -n -m --propagation private sh -c 'ip link set lo up && exec "$$0" "$$@"' \
		env CORREO_STRICT=1 CORREO_NSS_LIB=$(CURDIR)/bin/libnss_correo.so.2 GOPROXY=off \
		$(GO) test -race -count=1 -timeout 30m ./...

# nix/lib against Go's goldens; the NixOS module (nix/modules) evaluated
# offline with nixpkgs' lib (NIXPKGS_LIB, default nix/vendor/nixpkgs-lib/lib)
# and a stub of the NixOS options it touches.
nix-check:
	bash nix/lib/tests/run.sh
	bash nix/modules/tests/run.sh
	bash nix/nixos/tests/run.sh

# The dev cluster: state under .dev/, everything on 127.0.0.1 high ports.
dev: deps build
	bin/correoctl cluster up --profile hosts/dev.toml --state .dev/run --bin bin --echo --demo demo

# The Debian bookworm root file system every booted host runs on
# (internal/rootfs): built once with mmdebstrap from this machine's apt
# source into /var/cache/correo/rootfs (CORREO_ROOTFS_CACHE overrides),
# then taken from there. Root.
rootfs: deps
	$(GO) run ./internal/cmd/mkimage -rootfs-only

# A raw disk image of one host of a profile (internal/appliance), to write
# to a disk with dd or boot under QEMU: the host's tree rendered by
# correoctl host render, with the programs from `make build` and the
# cluster key KEY (created on first use: build every host of a cluster
# with the same one) and, for hosts with [host.tls], the certificate
# TLS_CERT and key TLS_KEY, over the cached rootfs. Root.
PROFILE ?= hosts/example.toml
KEY ?= images/cluster.key
image: deps build
	@if [ -z "$(HOST)" ]; then echo "usage: make image PROFILE=hosts/example.toml HOST=store1 [OUT=images/store1.img] [KEY=images/cluster.key] [TLS_CERT=mx1.crt TLS_KEY=mx1.key]" >&2; exit 2; fi
	$(GO) run ./internal/cmd/mkimage -profile $(PROFILE) -host $(HOST) -bin bin -key $(KEY) -out $(or $(OUT),images/$(HOST).img) \
		$(if $(TLS_CERT),-tls-cert $(TLS_CERT) -tls-key $(TLS_KEY))

clean:
	rm -rf bin .dev
