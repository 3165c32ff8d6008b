# correo: the two entry points README.md promises, and their parts.
#   make dev   — run the dev cluster described by hosts/dev.toml
#   make test  — every test: formatting, vet, go test -race, the Nix checks
SHELL := /bin/bash
GO ?= go
export CGO_ENABLED ?= 1

.PHONY: all build deps test fmt-check vet gotest nix-check dev clean

all: build

build:
	$(GO) build -o bin/ ./src/cmd/...

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

gotest:
	CORREO_STRICT=1 $(GO) test -race -count=1 ./...

nix-check:
	bash nix/lib/tests/run.sh

# The dev cluster: state under .dev/, everything on 127.0.0.1 high ports.
dev: deps build
	bin/correoctl cluster up --profile hosts/dev.toml --state .dev/run --bin bin

clean:
	rm -rf bin .dev
