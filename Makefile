# nfqguard: `sudo make demo` runs the demo, `sudo make test` runs every test,
# `sudo make bench` measures what the engine costs (see docs/benchmarks.md).
# They install what they need on a fresh Debian machine first.
#
# Two binaries: bin/nfqguard is the daemon a Docker host runs (run, check,
# status, reload); bin/nfqguard-lab runs the demo, the bench and its Go
# floor against a built-in lab, and starts bin/nfqguard for them.

GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
STATICCHECK_VERSION := v0.7.0
GOBIN := $(shell $(GO) env GOPATH 2>/dev/null)/bin
# A count, not a duration: Go 1.26's fuzz coordinator can report a spurious
# "context deadline exceeded" failure when a -fuzztime duration expires
# (golang/go#75804, fixed in Go 1.27); a count has no deadline to race.
# 100000 executions take 3-10 s per target here.
FUZZTIME ?= 100000x
# Minimizing a new interesting input may take up to 60 s by default, which
# would eat a short run: cap it so the time goes to fuzzing.
FUZZFLAGS ?= -fuzztime=$(FUZZTIME) -fuzzminimizetime=100x
# Debian packages the product and its tests need, by the command they
# provide; the bench also builds its C floor with gcc and libnetfilter-queue-dev,
# and the end-to-end suite runs a private Docker engine from docker.io.
DEB_PACKAGES := iptables iproute2 util-linux gcc libnetfilter-queue-dev docker.io
NFQ_HEADER := /usr/include/libnetfilter_queue/libnetfilter_queue.h

.PHONY: all build demo bench test check lint fuzz deps deps-debian deps-docker29 require-root clean

all: build

build:
	$(GO) build -o bin/nfqguard ./cmd/nfqguard
	$(GO) build -o bin/nfqguard-lab ./cmd/nfqguard-lab

demo: require-root deps-debian build
	./bin/nfqguard-lab demo -c config.toml

# bench: the full benchmark (a few minutes); the table goes to stdout,
# bench.json and latency-cdf.png to bench-out/.
bench: require-root deps-debian build
	./bin/nfqguard-lab bench -c config.toml --out bench-out

# test: static checks, the whole suite (unit and real-traffic namespace
# tests; run as root, they never skip under CI=true), the whole suite again
# under the race detector (the end-to-end tests then build the engine with
# -race too), a quick bench run (keeps the tool working; no thresholds), and
# a short run of every fuzz target. Every package's tests fail on leaked
# goroutines, and every engine they start checks its own at exit
# (NFQGUARD_LEAK_CHECK=1).
test: require-root deps lint build
	$(GO) test -count=1 ./...
	$(GO) test -count=1 -tags leakcheck ./internal/cli/
	$(GO) test -count=1 -race ./...
	./bin/nfqguard-lab bench --quick -c config.toml --out "$$(mktemp -d)"
	$(MAKE) fuzz

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags leakcheck ./internal/cli/
	@test -x $(GOBIN)/staticcheck || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(GOBIN)/staticcheck ./...
	$(GOBIN)/staticcheck -tags leakcheck ./internal/cli/

# Fuzz targets, as package:function. A failing input is written by go test to
# PACKAGE/testdata/fuzz/FUNCTION/ and printed here, so that it survives a CI
# clone: commit it and every plain `go test` runs it as a regression seed.
FUZZ_TARGETS := inspect:FuzzDecode inspect:FuzzGopacketAgrees inspect:FuzzJudge queue:FuzzParsePacket \
  rules:FuzzParse rules:FuzzParseAddr \
  inspect/l7:FuzzParseClientHello inspect/l7:FuzzParseHTTPRequest \
  inspect/l7:FuzzParseDNSQuery inspect/l7:FuzzParseDNSOverTCP \
  inspect/l7:FuzzQUICInitial inspect/l7:FuzzQUICFrames inspect/l7:FuzzParseDNSResponse

fuzz:
	@for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; fn=$${t##*:}; \
	  echo "fuzz $$fn (./$$pkg, $(FUZZTIME))"; \
	  if ! $(GO) test -run='^$$' -fuzz="^$$fn\$$" $(FUZZFLAGS) ./$$pkg/; then \
	    echo "fuzz $$fn failed. Its failing input, in $$pkg/testdata/fuzz/$$fn/, is a new regression seed: commit it."; \
	    for f in $$(git ls-files --others --exclude-standard "$$pkg/testdata/fuzz/$$fn" 2>/dev/null); do \
	      echo "--- $$f"; cat "$$f"; echo; done; \
	    exit 1; \
	  fi; \
	done

check: build
	./bin/nfqguard check -c config.toml

require-root:
	@if [ "$$(id -u)" != 0 ]; then \
	  echo "nfqguard changes iptables and creates network namespaces: run as root (sudo make $(MAKECMDGOALS))"; exit 1; fi

# deps installs the Debian packages that provide iptables, nft, ip, setpriv, gcc,
# the libnetfilter_queue header and dockerd when any of them is missing.
# Installing docker.io may start the machine's own Docker service; the tests
# do not use it (they run a private dockerd in a network namespace).
# Then deps-docker29 builds the Docker 29 engine the suite also runs.
deps: deps-debian deps-docker29

deps-debian:
	@missing=""; \
	  command -v iptables >/dev/null || missing="$$missing iptables"; \
	  command -v ip >/dev/null || missing="$$missing iproute2"; \
	  command -v setpriv >/dev/null || missing="$$missing util-linux"; \
	  command -v gcc >/dev/null || missing="$$missing gcc"; \
	  test -f $(NFQ_HEADER) || missing="$$missing libnetfilter-queue-dev"; \
	  command -v dockerd >/dev/null || missing="$$missing docker.io"; \
	  command -v tcpdump >/dev/null || missing="$$missing tcpdump"; \
	  command -v nft >/dev/null || missing="$$missing nftables"; \
	  command -v logrotate >/dev/null || missing="$$missing logrotate"; \
	  command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	  command -v curl >/dev/null || missing="$$missing curl"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  fi
	@test -x "$(GO)" || { echo "Go not found: install Go 1.26 (https://go.dev/doc/install) or put it on PATH"; exit 1; }

# deps-docker29 builds Docker 29 (dockerd, docker-proxy, containerd, its shim,
# runc, the docker client) from Go modules at the versions pinned in
# internal/dockerlab/docker29.versions into $(DOCKER29_CACHE)/HASH/bin,
# outside the checkout: about 13 minutes the first time on 2 cores, nothing
# once built (see internal/dockerlab/build-docker29.sh).
DOCKER29_CACHE ?= /var/cache/nfqguard/docker29
deps-docker29: deps-debian
	NFQG_DOCKER29_CACHE=$(DOCKER29_CACHE) GO=$(GO) bash internal/dockerlab/build-docker29.sh

clean:
	rm -rf bin
