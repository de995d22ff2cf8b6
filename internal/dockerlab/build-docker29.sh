#!/usr/bin/env bash
# build-docker29.sh builds the Docker 29 engine that dockerlab.Docker29 runs:
# dockerd and docker-proxy (moby), containerd and its runc shim, runc and the
# docker client, from Go modules at the versions pinned in docker29.versions,
# into
#
#   ${NFQG_DOCKER29_CACHE:-/var/cache/nfqguard/docker29}/HASH/bin
#
# where HASH is the first 16 hex digits of docker29.versions' sha256, the
# same name dockerlab computes. The directory is outside the checkout, so it
# survives between CI clones on one machine; when it already exists the
# script does nothing. Otherwise it installs libseccomp-dev and pkg-config
# through apt-get when missing (runc links libseccomp), builds everything in
# a staging directory beside it and renames that into place only once every
# binary is built: an interrupted build leaves no half-filled cache. A cold
# build takes about 13 minutes on 2 cores (Go's module and build caches make
# a rebuild after a pin change faster). Nothing in /usr/bin is replaced:
# dockerlab puts this bin directory first on the daemon's PATH instead.
#
# Usage: build-docker29.sh [-n]   (-n: only print the bin directory, build nothing)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
versions_file=$here/docker29.versions
# shellcheck source=docker29.versions
. "$versions_file"

cache=${NFQG_DOCKER29_CACHE:-/var/cache/nfqguard/docker29}
hash=$(sha256sum <"$versions_file" | cut -c1-16)
dest=$cache/$hash

if [ "${1:-}" = -n ]; then
	echo "$dest/bin"
	exit 0
fi
if [ -d "$dest/bin" ]; then
	echo "docker29: $dest/bin is up to date (moby $MOBY_VERSION, containerd $CONTAINERD_VERSION, runc $RUNC_VERSION, cli $CLI_VERSION)"
	exit 0
fi

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
if [ ! -x "$GO" ] && ! command -v "$GO" >/dev/null; then
	echo "docker29: Go not found: install Go 1.26 or put it on PATH" >&2
	exit 1
fi

# runc's seccomp support is cgo against libseccomp.
if ! command -v pkg-config >/dev/null || ! pkg-config --exists libseccomp 2>/dev/null; then
	echo "docker29: installing libseccomp-dev pkg-config"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libseccomp-dev pkg-config
fi

mkdir -p "$cache"
# One build at a time per cache (two CI clones, or make deps run twice).
exec 9>"$cache/.lock"
flock 9
if [ -d "$dest/bin" ]; then
	echo "docker29: $dest/bin was built meanwhile"
	exit 0
fi
# Left by a build that was killed (the lock is ours, so none is running).
rm -rf "$cache"/.build-*

stage=$(mktemp -d "$cache/.build-$hash-XXXXXX")
chmod 755 "$stage" # mktemp's 0700 would stay on the cache directory
trap 'rm -rf "$stage"' EXIT
bin=$stage/bin
mkdir -p "$bin"
start=$(date +%s)

# Module mode for every build: each tool's own go.mod decides its
# dependencies, whatever GOFLAGS or a go.work around the caller says.
export GOWORK=off GOFLAGS=-mod=mod GOTOOLCHAIN=local
step() { echo "docker29: $* ($(($(date +%s) - start)) s)"; }

moby_dir=$("$GO" mod download -json "github.com/moby/moby/v2@$MOBY_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
# The "last" Docker release merged into this moby version.
engine_version=$(sed -n 's/^  last: "\(.*\)"$/\1/p' "$moby_dir/releases/versions.yaml")
case $engine_version in
29.*) ;;
*)
	echo "docker29: cannot read the engine version from $moby_dir/releases/versions.yaml (got '$engine_version')" >&2
	exit 1
	;;
esac

step "dockerd $engine_version and docker-proxy (moby $MOBY_VERSION)"
# Static, without cgo: no btrfs graph driver (its cgo needs btrfs headers),
# no NRI WebAssembly plugins; nftables is driven through the nft command.
CGO_ENABLED=0 GOBIN=$bin "$GO" install -trimpath \
	-tags "netgo osusergo nri_no_wasm exclude_graphdriver_btrfs" \
	-ldflags "-X github.com/moby/moby/v2/dockerversion.Version=$engine_version -X github.com/moby/moby/v2/dockerversion.GitCommit=moby-$MOBY_VERSION" \
	"github.com/moby/moby/v2/cmd/dockerd@$MOBY_VERSION" \
	"github.com/moby/moby/v2/cmd/docker-proxy@$MOBY_VERSION"

step "containerd $CONTAINERD_VERSION"
# Docker needs neither the CRI plugin nor the btrfs, devmapper and zfs
# snapshotters; the shim is static, as containerd's Makefile builds it.
cd_ldflags="-X github.com/containerd/containerd/v2/version.Version=${CONTAINERD_VERSION#v}"
CGO_ENABLED=0 GOBIN=$bin "$GO" install -trimpath \
	-tags "no_btrfs no_cri no_devmapper no_zfs urfave_cli_no_docs" -ldflags "$cd_ldflags" \
	"github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION"
CGO_ENABLED=0 GOBIN=$bin "$GO" install -trimpath \
	-tags "no_grpc urfave_cli_no_docs" -ldflags "$cd_ldflags" \
	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION"

step "runc $RUNC_VERSION"
CGO_ENABLED=1 GOBIN=$bin "$GO" install -trimpath -tags seccomp \
	-ldflags "-X main.gitCommit=$RUNC_VERSION" \
	"github.com/opencontainers/runc@$RUNC_VERSION"

step "docker client $CLI_VERSION"
# docker/cli has no go.mod: its vendor.mod and vendor.sum stand in for one
# (as its own scripts/with-go-mod.sh does), with the dependencies from the
# module proxy (the module ships vendor/modules.txt only).
cli_mod=$("$GO" mod download -json "github.com/docker/cli@$CLI_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
cli_src=$stage/cli-src
cp -r "$cli_mod" "$cli_src"
chmod -R u+w "$cli_src"
cp "$cli_src/vendor.mod" "$cli_src/go.mod"
cp "$cli_src/vendor.sum" "$cli_src/go.sum"
rm -rf "$cli_src/vendor"
cli_version=${CLI_VERSION#v}
cli_version=${cli_version%+incompatible}
(cd "$cli_src" && CGO_ENABLED=0 "$GO" build -trimpath -o "$bin/docker" \
	-ldflags "-X github.com/docker/cli/cli/version.Version=$cli_version -X github.com/docker/cli/cli/version.GitCommit=cli-$CLI_VERSION" \
	./cmd/docker)
rm -rf "$cli_src"

cp "$versions_file" "$stage/VERSIONS"
echo "ENGINE_VERSION=$engine_version" >>"$stage/VERSIONS"
"$bin/dockerd" --version
"$bin/containerd" --version
# sed, not head: head exits after one line, runc then dies of SIGPIPE
# writing the next, and pipefail fails the whole build.
"$bin/runc" --version | sed -n 1p
"$bin/docker" --version
mv "$stage" "$dest"
trap - EXIT
step "built into $dest/bin"
