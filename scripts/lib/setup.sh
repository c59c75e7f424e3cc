# shellcheck shell=bash
# What Berth's scripts need from the system, and the one way they get it.
# Sourced (not run) by scripts/demo, scripts/test, scripts/lab and
# scripts/conformance, before they change directory:
#
#   source "$(dirname "$0")/lib/setup.sh"
#   berth_install_packages "${BERTH_DEMO_PACKAGES[@]}"
#
# On Debian or Ubuntu the berth_install_* functions install what is missing
# (through sudo when not root); elsewhere they list what to install and
# exit non-zero. With BERTH_SETUP_DRY_RUN=1 they only say what they would
# install. Rust itself is assumed: it builds everything else. What they
# print goes to stderr, so that a script's stdout stays its own.

# --- What to install ---------------------------------------------------------
# Debian package names. What each is for:
#   busybox-static   the userland inside every container (berth-mkrootfs)
#   libc6-dev gcc    a static glibc and a linker for the chroot escape demo
#                    that the build embeds (gcc also links every Rust binary)
#   umoci skopeo     build images from a directory, copy them between
#                    registries and layouts (stage 04's peers)
#   docker-registry  a real registry on 127.0.0.1 (tests, the lab)
#   curl             speaks to the registry by hand (chapter 4)
#   openssl          signs the tokens of the tests' token server (push tests)
#   iproute2 nftables  what stage 05 builds and the host is checked with
#   procps util-linux  ps, pgrep, unshare, nsenter on the host side
#   iputils-ping     the ping the escape tests run without CAP_NET_RAW
#   tmux             the terminal the engine's -it test types into
#   podman conmon containerd  real engines that drive berth-runtime in tests
#   buildah          builds tests/dockerfiles too: its file trees are the
#                    reference berth build's must match
#   chromium         renders the book's pictures in the pictures test
#   qemu-system-x86  the virtual machine of scripts/v2-vm, a cgroup v2 host in
#                    which the tests replay the book's v2 sessions on v1 or
#                    hybrid hosts (its kernel: berth_install_vm_kernel)

# shellcheck disable=SC2034 # the lists are for the scripts that source this
# The demo: build, a busybox rootfs, the stages, and the engine on an image.
BERTH_DEMO_PACKAGES=(busybox-static libc6-dev gcc umoci)
# The lab (scripts/lab) and every command the book's chapters type.
BERTH_LAB_PACKAGES=(busybox-static libc6-dev gcc docker-registry skopeo umoci curl
    iproute2 nftables procps util-linux)
# Everything scripts/test runs.
BERTH_TEST_PACKAGES=(busybox-static libc6-dev gcc iproute2 iputils-ping procps util-linux
    nftables docker-registry skopeo umoci curl tmux podman conmon containerd chromium
    qemu-system-x86 buildah strace)
# scripts/v2-vm, a cgroup v2 host in a VM (and a kernel: berth_install_vm_kernel).
BERTH_V2VM_PACKAGES=(qemu-system-x86 busybox-static)
# The push tests' token server signs its tokens with openssl.
BERTH_TEST_PACKAGES+=(openssl)

# The book's builder, pinned to the series the book is written for.
BERTH_MDBOOK_VERSION=0.5.4
# The OCI conformance suite (scripts/conformance) is built with Go >= this.
BERTH_GO_MIN=1.21

# --- Paths -------------------------------------------------------------------
# The script that sourced this, by a path that survives its `cd`.
BERTH_SCRIPT=$(realpath "$0")

# A relative CARGO_TARGET_DIR means relative to where the user typed the
# command; the scripts change directory, so pin it now, while we are there.
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    CARGO_TARGET_DIR=$(realpath -m "$CARGO_TARGET_DIR")
    export CARGO_TARGET_DIR
fi

# Where cargo puts what it builds: $CARGO_TARGET_DIR, a cargo config's
# build.target-dir, or target/. Asking cargo covers all three. Run it from
# the workspace; the binaries are in "$(berth_target_dir)/debug".
berth_target_dir() {
    local dir
    dir=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    echo "${dir:-${CARGO_TARGET_DIR:-$PWD/target}}"
}

# --- Running as root ---------------------------------------------------------
berth_setup_say() { printf '==> %s\n' "$*" >&2; }

# Run a command as root: directly when we are root, through sudo otherwise.
berth_as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        echo "berth: this needs root and there is no sudo: run it as root ($*)" >&2
        return 1
    fi
}

# Run this script again, with these arguments, as root under sudo, with the
# environment that cargo and Berth's scripts read (sudo would reset it):
# exec, so it does not return.
berth_reexec_as_root() {
    local vars=() name
    for name in $(compgen -e); do
        case $name in
            BERTH_* | CARGO_* | RUSTUP_* | RUSTFLAGS | RUSTDOCFLAGS | TMPDIR | DEBIAN_FRONTEND)
                vars+=("$name=${!name}") ;;
        esac
    done
    command -v sudo >/dev/null || {
        echo "berth: $BERTH_SCRIPT needs root and there is no sudo: run it as root" >&2
        exit 1
    }
    exec sudo env "PATH=$PATH" "CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}" \
        "RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}" "${vars[@]}" "$BERTH_SCRIPT" "$@"
}

# --- Debian packages ---------------------------------------------------------
berth_is_debian_like() {
    local ids
    command -v apt-get >/dev/null && command -v dpkg-query >/dev/null || return 1
    ids=$(. /etc/os-release 2>/dev/null && echo " ${ID:-} ${ID_LIKE:-} ")
    [[ $ids == *" debian "* || $ids == *" ubuntu "* ]]
}

# On a system without dpkg: is what this Debian package provides there?
berth_has_equivalent() {
    case $1 in
        busybox-static) [ -x /bin/busybox ] || command -v busybox ;;
        libc6-dev) [ -f "$(cc -print-file-name=libc.a 2>/dev/null)" ] ;;
        gcc) command -v cc || command -v gcc ;;
        iproute2) command -v ip ;;
        iputils-ping) command -v ping ;;
        procps) command -v pgrep ;;
        util-linux) command -v unshare ;;
        nftables) command -v nft ;;
        conmon) command -v conmon || [ -x /usr/libexec/podman/conmon ] ;;
        chromium) command -v chromium || command -v chromium-browser ;;
        qemu-system-x86) command -v qemu-system-x86_64 ;;
        *) command -v "$1" ;;
    esac >/dev/null 2>&1
}

# What a package gives us, for a user who must find it under another name.
berth_package_provides() {
    case $1 in
        busybox-static) echo "a statically linked busybox (berth-mkrootfs --busybox PATH takes it)" ;;
        libc6-dev) echo "glibc's static libc.a" ;;
        gcc) echo "cc, the C compiler and linker" ;;
        iproute2) echo "ip" ;;
        iputils-ping) echo "ping" ;;
        procps) echo "ps, pgrep" ;;
        util-linux) echo "unshare, nsenter" ;;
        nftables) echo "nft" ;;
        docker-registry) echo "the CNCF distribution registry (registry or docker-registry)" ;;
        containerd) echo "containerd and ctr" ;;
        chromium) echo "a Chromium browser (chromium or chromium-browser)" ;;
        qemu-system-x86) echo "qemu-system-x86_64" ;;
        *) echo "$1" ;;
    esac
}

# The packages of the list that are not installed, one a line.
berth_missing_packages() {
    local pkg
    for pkg in "$@"; do
        if berth_is_debian_like; then
            dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || echo "$pkg"
        else
            berth_has_equivalent "$pkg" || echo "$pkg"
        fi
    done
}

# Install the Debian packages of the list that are missing.
berth_install_packages() {
    local missing
    mapfile -t missing < <(berth_missing_packages "$@")
    [ ${#missing[@]} -gt 0 ] || return 0
    if ! berth_is_debian_like; then
        {
            echo "berth: this is not Debian or Ubuntu, so nothing was installed. Install these"
            echo "(Debian's names; your distribution's packages may be named differently),"
            echo "then run this again:"
            local pkg
            for pkg in "${missing[@]}"; do
                printf '  %-16s %s\n' "$pkg" "$(berth_package_provides "$pkg")"
            done
        } >&2
        exit 1
    fi
    if [ "${BERTH_SETUP_DRY_RUN:-}" = 1 ]; then
        berth_setup_say "would install (apt-get): ${missing[*]}"
        return 0
    fi
    berth_setup_say "installing (apt-get): ${missing[*]}"
    # Another apt-get may be running (a second test run, the system's own):
    # wait for its lock rather than fail.
    berth_as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get -q -o DPkg::Lock::Timeout=600 update >&2
    berth_as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get -q -y -o DPkg::Lock::Timeout=600 install "${missing[@]}" >&2
}

# --- A kernel for scripts/v2-vm ------------------------------------------------
# The kernel the VM boots: $BERTH_V2VM_KERNEL, else the host's own
# (/boot/vmlinuz-$(uname -r)), else the newest in /boot. Prints its path;
# fails when there is none. A host booted from outside (a VM whose kernel is
# not in /boot, like the CI machine) uses a distribution kernel, which
# berth_install_vm_kernel installs.
berth_vm_kernel() {
    local kernel=${BERTH_V2VM_KERNEL:-}
    if [ -z "$kernel" ] && [ -f "/boot/vmlinuz-$(uname -r)" ]; then
        kernel=/boot/vmlinuz-$(uname -r)
    elif [ -z "$kernel" ]; then
        kernel=$(find /boot -maxdepth 1 -name 'vmlinuz-*' 2>/dev/null | sort -V | tail -1)
    fi
    [ -n "$kernel" ] && [ -f "$kernel" ] && echo "$kernel"
}

berth_install_vm_kernel() {
    berth_vm_kernel >/dev/null && return 0
    if [ -n "${BERTH_V2VM_KERNEL:-}" ]; then
        echo "berth: BERTH_V2VM_KERNEL=$BERTH_V2VM_KERNEL is not a file: point it at a vmlinuz, or unset it" >&2
        exit 1
    fi
    local package=linux-image-amd64
    if ! berth_is_debian_like; then
        echo "berth: scripts/v2-vm needs a Linux kernel to boot, and /boot has none: install your distribution's kernel package, or set BERTH_V2VM_KERNEL=PATH to a vmlinuz" >&2
        exit 1
    fi
    [[ $(. /etc/os-release 2>/dev/null && echo "${ID:-}") == ubuntu ]] && package=linux-image-generic
    if [ "${BERTH_SETUP_DRY_RUN:-}" = 1 ]; then
        berth_setup_say "would install a kernel for scripts/v2-vm (apt-get $package)"
        return 0
    fi
    berth_setup_say "installing a kernel for scripts/v2-vm's VM ($package; the host keeps its own)"
    berth_as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get -q -o DPkg::Lock::Timeout=600 update >&2
    berth_as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get -q -y -o DPkg::Lock::Timeout=600 install --no-install-recommends "$package" >&2
}

# --- mdbook ------------------------------------------------------------------
# cargo install puts programs in $CARGO_HOME/bin, which may not be on PATH.
berth_cargo_bin_on_path() {
    local bin=${CARGO_HOME:-$HOME/.cargo}/bin
    case ":$PATH:" in *":$bin:"*) ;; *) export PATH="$bin:$PATH" ;; esac
}

berth_install_mdbook() {
    berth_cargo_bin_on_path
    if mdbook --version 2>/dev/null | grep -q "v$BERTH_MDBOOK_VERSION\$"; then
        return 0
    fi
    local install=(cargo install mdbook --version "$BERTH_MDBOOK_VERSION" --locked
        --no-default-features --features search)
    if [ "${BERTH_SETUP_DRY_RUN:-}" = 1 ]; then
        berth_setup_say "would install mdbook: ${install[*]}"
        return 0
    fi
    berth_setup_say "installing mdbook $BERTH_MDBOOK_VERSION, the book's builder (about 2 minutes)"
    "${install[@]}" >&2
}

# --- Go ------------------------------------------------------------------------
berth_go_is_new_enough() {
    local version
    version=$(go env GOVERSION 2>/dev/null) || return 1
    version=${version#go}
    [ "$(printf '%s\n%s\n' "$version" "$BERTH_GO_MIN" | sort -V | head -1)" = "$BERTH_GO_MIN" ]
}

# Go >= 1.21 for the conformance suite. Debian 12's own golang-go is 1.19,
# so there it comes from bookworm-backports (a sources entry is added once).
berth_install_go() {
    berth_go_is_new_enough && return 0
    local codename
    codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
    if ! berth_is_debian_like; then
        echo "berth: Go >= $BERTH_GO_MIN is needed (for the conformance suite): install it, then run this again" >&2
        exit 1
    fi
    local target=() sources=/etc/apt/sources.list.d/berth-backports.sources
    if [ "$codename" = bookworm ]; then
        target=(-t bookworm-backports)
    fi
    if [ "${BERTH_SETUP_DRY_RUN:-}" = 1 ]; then
        berth_setup_say "would install Go >= $BERTH_GO_MIN (apt-get ${target[*]} golang-go)"
        return 0
    fi
    berth_setup_say "installing Go >= $BERTH_GO_MIN (golang-go${target:+ from bookworm-backports})"
    if [ "$codename" = bookworm ] && [ ! -f "$sources" ] &&
        ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d; then
        printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' |
            berth_as_root tee "$sources" >/dev/null
    fi
    berth_as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get -q -o DPkg::Lock::Timeout=600 update >&2
    berth_as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get -q -y -o DPkg::Lock::Timeout=600 install "${target[@]}" golang-go >&2
    berth_go_is_new_enough || {
        echo "berth: Go >= $BERTH_GO_MIN is needed and apt-get gave $(go env GOVERSION 2>/dev/null || echo none): install a newer Go, then run this again" >&2
        exit 1
    }
}
