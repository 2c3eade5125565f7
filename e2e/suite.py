# The ftplib client suite for the e2e tests: one session through the proxy doing every
# operation, printing sha256 of what it downloaded so the Go test can compare.
# usage: suite.py HOST PORT USER PASS MODE(pasv|epsv|port) TLS(none|explicit|implicit) CAFILE LOCAL MLSD(0|1)
import ftplib, hashlib, io, ssl, sys, json

host, port, user, pw, mode, tlsmode, cafile, local, mlsd = sys.argv[1:10]
port = int(port)
data = open(local, "rb").read()
out = {}

class ReuseFTP_TLS(ftplib.FTP_TLS):
    # Resume the control session on data connections (stock ftplib does not).
    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size

class ImplicitFTP_TLS(ReuseFTP_TLS):
    def connect(self, host, port, timeout=30):
        self.host, self.port = host, port
        import socket
        self.sock = socket.create_connection((host, port), timeout)
        self.af = self.sock.family
        self.sock = self.context.wrap_socket(self.sock, server_hostname=host)
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome

if tlsmode == "none":
    f = ftplib.FTP()
    f.connect(host, port, timeout=60)
else:
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    cls = ImplicitFTP_TLS if tlsmode == "implicit" else ReuseFTP_TLS
    f = cls(context=ctx)
    f.connect(host, port, timeout=60)
    if tlsmode == "explicit":
        f.auth()
f.trust_server_pasv_ipv4_address = True  # use the 227 address: a wrong rewrite must fail
f.login(user, pw)
if tlsmode != "none":
    f.prot_p()
if mode == "port":
    f.set_pasv(False)
elif mode == "epsv":
    # ftplib uses EPSV only on IPv6; force it by sending EPSV ourselves.
    orig = f.makepasv
    def makepasv():
        untrusted, port = ftplib.parse229(f.sendcmd("EPSV"), f.sock.getpeername())
        return f.sock.getpeername()[0], port
    f.makepasv = makepasv

d = "pyd-" + mode
f.mkd(d)
f.cwd(d)
out["pwd"] = f.pwd()
f.storbinary("STOR up.bin", io.BytesIO(data))
buf = io.BytesIO()
f.retrbinary("RETR up.bin", buf.write)
out["retr"] = hashlib.sha256(buf.getvalue()).hexdigest()
buf = io.BytesIO()
f.retrbinary("RETR up.bin", buf.write, rest=1000)
out["rest_retr"] = hashlib.sha256(buf.getvalue()).hexdigest()
half = len(data) // 2
f.storbinary("STOR app.bin", io.BytesIO(data[:half]))
f.storbinary("APPE app.bin", io.BytesIO(data[half:]))
buf = io.BytesIO()
f.retrbinary("RETR app.bin", buf.write)
out["appe"] = hashlib.sha256(buf.getvalue()).hexdigest()
f.voidcmd("TYPE I")
out["size"] = f.size("up.bin")
out["mdtm"] = f.sendcmd("MDTM up.bin")[:3]
out["nlst"] = sorted(n for n in f.nlst() if n not in (".", ".."))
lines = []
f.dir(lines.append)
out["list"] = len(lines)
if mlsd == "1":
    out["mlsd"] = sorted(n for n, facts in f.mlsd() if facts.get("type") == "file")
f.rename("app.bin", "renamed.bin")
f.delete("renamed.bin")
f.delete("up.bin")
f.cwd("..")
f.rmd(d)
out["quit"] = f.quit()[:3]
print(json.dumps(out))
