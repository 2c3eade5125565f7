#!/usr/bin/env bash
# Installs the real FTP peers that the integration tests run against (see
# internal/peers): the clients lftp, curl, python3 and haproxy from Debian, and
# the servers vsftpd, pure-ftpd and ProFTPD unpacked side by side under
# /opt/ftpsproxy-peers. The three servers each declare "Conflicts: ftp-server",
# so apt would keep only one of them: they are downloaded and unpacked with
# dpkg-deb instead of installed, and only their libraries are installed.
# Also creates the test account ftptest (password ftptest-Pass1) and the PAM
# service ftpsproxy-vsftpd. Idempotent; a second run takes about a second.
# Runs as root on Debian 12.
set -euo pipefail

PREFIX=/opt/ftpsproxy-peers
TEST_USER=ftptest
TEST_PASS=ftptest-Pass1
TEST_HOME=/home/ftptest
PAM_SERVICE=ftpsproxy-vsftpd

# Clients, tools (chromium renders the admin status page in a test), and every library the unpacked servers link against
# (checked with ldd below, so a missing one fails this script, not a test).
APT_PACKAGES=(
	lftp curl openssl python3 iproute2 haproxy ca-certificates
	libcap2 libpam0g libpam-modules libpam-runtime libssl3 libwrap0
	libsodium23 libcrypt1 libhiredis0.14 libmemcached11 libmemcachedutil2
	libpcre2-8-0 libpcre2-posix3 libidn2-0 libacl1 zlib1g libsqlite3-0
	libncursesw6 libtinfo6 passwd mount util-linux
	chromium
	# Packaging and operations tests (e2e/deb_test.go, e2e/dist_test.go): dpkg -i of the
	# .deb (adduser), setpriv (util-linux), systemd-analyze verify, logrotate -d, promtool.
	adduser systemd logrotate prometheus
	# Shared cluster state (cluster/, e2e/cluster_test.go): a real Redis, started by the tests.
	redis-server
	# The DNAT rule of the announced-port test (e2e/edgens_test.go).
	nftables
)
# Unpacked, never installed: name of the unpack directory = first package.
declare -A PEER_DEBS=(
	[vsftpd]="vsftpd"
	[pure-ftpd]="pure-ftpd pure-ftpd-common"
	[proftpd]="proftpd-core proftpd-mod-crypto proftpd-mod-proxy"
)

die() {
	echo "install-test-peers: FAILED: $*" >&2
	exit 1
}
log() { echo "install-test-peers: $*" >&2; }
trap 'die "command failed (line $LINENO): $BASH_COMMAND"' ERR

[[ $(id -u) -eq 0 ]] || die "must run as root"
command -v apt-get >/dev/null || die "needs a Debian system with apt-get"

export DEBIAN_FRONTEND=noninteractive

# --- 1. Debian packages (skipped when all are installed already) -----------
declare -A INSTALLED=()
while read -r st name; do
	[[ $st == ii ]] && INSTALLED[${name%%:*}]=1
done < <(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' "${APT_PACKAGES[@]}" 2>/dev/null || true)
missing=()
for p in "${APT_PACKAGES[@]}"; do
	[[ -n ${INSTALLED[$p]:-} ]] || missing+=("$p")
done

policy_created=
cleanup() {
	if [[ -n $policy_created ]]; then rm -f /usr/sbin/policy-rc.d; fi
	if [[ -n ${dl_dir:-} ]]; then rm -rf "$dl_dir"; fi
}
trap cleanup EXIT

apt_ready=
apt_update_once() {
	[[ -n $apt_ready ]] && return 0
	# An empty package list (fresh image) makes every install fail: update first.
	if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
		log "apt-get update"
		apt-get update -qq || die "apt-get update failed"
	fi
	apt_ready=1
}

if ((${#missing[@]})); then
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		# Forbid service starts from maintainer scripts while we install.
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		policy_created=1
	fi
	apt_update_once
	log "apt-get install ${missing[*]}"
	if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/install-test-peers-apt.log 2>&1; then
		# A stale list gives 404s: refresh once and retry.
		apt-get update -qq || true
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/install-test-peers-apt.log 2>&1 ||
			die "apt-get install failed, see /tmp/install-test-peers-apt.log: $(tail -5 /tmp/install-test-peers-apt.log)"
	fi
fi

# --- 2. The three servers, unpacked side by side -------------------------
# A stamp per directory records the package versions unpacked there, so a
# rerun downloads nothing unless Debian published a new version.
declare -A CANDIDATE=()
load_candidates() {
	local name= line
	CANDIDATE=()
	# One apt-cache call for all packages: each costs ~0.4 s.
	while IFS= read -r line; do
		case $line in
		[a-z0-9]*:) name=${line%:} ;;
		*Candidate:*) CANDIDATE[$name]=${line##*Candidate: } ;;
		esac
	done < <(apt-cache policy ${PEER_DEBS[*]} 2>/dev/null)
}
load_candidates
for d in ${PEER_DEBS[*]}; do
	v=${CANDIDATE[$d]:-}
	if [[ -z $v || $v == "(none)" ]]; then
		apt_update_once
		load_candidates
		break
	fi
done

dl_dir=
for dir in vsftpd pure-ftpd proftpd; do
	read -r -a debs <<<"${PEER_DEBS[$dir]}"
	stamp="$PREFIX/$dir/.installed"
	want=
	specs=()
	for d in "${debs[@]}"; do
		v=${CANDIDATE[$d]:-}
		[[ -n $v && $v != "(none)" ]] || die "package $d not found in the apt sources"
		want+="$d=$v "
		specs+=("$d=$v")
	done
	# Each directory holds its server at usr/sbin/<dir>.
	if [[ -f $stamp && $(<"$stamp") == "$want" && -x $PREFIX/$dir/usr/sbin/$dir ]]; then
		continue
	fi
	if [[ -z $dl_dir ]]; then
		dl_dir=$(mktemp -d /tmp/install-test-peers.XXXXXX)
		chmod 777 "$dl_dir" # apt-get download runs as the _apt user
	fi
	log "downloading ${debs[*]}"
	(cd "$dl_dir" && apt-get download -qq "${specs[@]}") ||
		{ apt-get update -qq || true; (cd "$dl_dir" && apt-get download -qq "${debs[@]}"); } ||
		die "apt-get download ${debs[*]} failed"
	rm -rf "${PREFIX:?}/$dir"
	mkdir -p "$PREFIX/$dir"
	for d in "${debs[@]}"; do
		deb=$(compgen -G "$dl_dir/${d}_*.deb" | head -1) || die "no .deb for $d"
		dpkg-deb -x "$deb" "$PREFIX/$dir" || die "dpkg-deb -x $deb"
	done
	printf '%s' "$want" >"$stamp"
done

VSFTPD=$PREFIX/vsftpd/usr/sbin/vsftpd
PUREFTPD=$PREFIX/pure-ftpd/usr/sbin/pure-ftpd
PUREPW=$PREFIX/pure-ftpd/usr/bin/pure-pw
PROFTPD=$PREFIX/proftpd/usr/sbin/proftpd
for b in "$VSFTPD" "$PUREFTPD" "$PUREPW" "$PROFTPD"; do
	[[ -x $b ]] || die "missing binary $b after unpacking"
done

# Every binary and module must resolve all of its libraries.
unresolved=
while IFS= read -r -d '' f; do
	if file_out=$(ldd "$f" 2>&1) && grep -q 'not found' <<<"$file_out"; then
		unresolved+="$f: $(grep 'not found' <<<"$file_out" | tr -s ' \t' ' ' | tr '\n' ';')"$'\n'
	fi
done < <(find "$PREFIX/vsftpd/usr/sbin" "$PREFIX/pure-ftpd/usr/sbin" "$PREFIX/pure-ftpd/usr/bin" \
	"$PREFIX/proftpd/usr/sbin" "$PREFIX/proftpd/usr/lib/proftpd" -type f \( -perm -u+x -o -name '*.so' \) -print0)
[[ -z $unresolved ]] || die "unresolved libraries (add their packages to APT_PACKAGES):"$'\n'"$unresolved"

"$PROFTPD" -v >/dev/null || die "$PROFTPD does not run"

# --- 3. The test account and its PAM service ------------------------------
grep -qxF /bin/bash /etc/shells || echo /bin/bash >>/etc/shells
if ! id -u "$TEST_USER" >/dev/null 2>&1; then
	useradd --create-home --home-dir "$TEST_HOME" --shell /bin/bash "$TEST_USER" ||
		die "useradd $TEST_USER"
fi
IFS=: read -r _ _ _ _ _ home shell < <(getent passwd "$TEST_USER")
if [[ $home != "$TEST_HOME" || $shell != /bin/bash ]]; then
	usermod --home "$TEST_HOME" --shell /bin/bash "$TEST_USER" || die "usermod $TEST_USER"
fi
mkdir -p "$TEST_HOME"
chown "$TEST_USER:" "$TEST_HOME"
chmod 755 "$TEST_HOME"
# chpasswd also clears a "locked" or expired state left by useradd.
echo "$TEST_USER:$TEST_PASS" | chpasswd || die "chpasswd $TEST_USER"
chage -E -1 -M -1 "$TEST_USER"

cat >"/etc/pam.d/$PAM_SERVICE.tmp" <<'EOF'
# Written by ftpsproxy scripts/install-test-peers.sh for the test vsftpd.
auth     required pam_unix.so
account  required pam_unix.so
session  required pam_unix.so
EOF
mv "/etc/pam.d/$PAM_SERVICE.tmp" "/etc/pam.d/$PAM_SERVICE"

# --- 4. Summary ----------------------------------------------------------
ver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo '?'; }
stampver() { sed -n "s/.*$2=\([^ ]*\).*/\1/p" "$PREFIX/$1/.installed"; }
py=$(command -v python3) || die "python3 not on PATH"
"$py" -c 'import ftplib, ssl' || die "$py lacks ftplib/ssl"
echo "test peers ready in $PREFIX: vsftpd $(stampver vsftpd vsftpd)," \
	"pure-ftpd $(stampver pure-ftpd pure-ftpd), proftpd $(stampver proftpd proftpd-core)" \
	"(mod_proxy $(stampver proftpd proftpd-mod-proxy)); lftp $(ver lftp), curl $(ver curl)," \
	"haproxy $(ver haproxy), $("$py" --version 2>&1) at $py; user $TEST_USER"
