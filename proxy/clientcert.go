package proxy

import "crypto/tls"

// noteClientCert records the verified client certificate of the control connection (if the
// client presented one) and adds its subject to every later log record of the session.
func (s *session) noteClientCert(st tls.ConnectionState) {
	if len(st.PeerCertificates) == 0 {
		return
	}
	s.clientCert = st.PeerCertificates[0]
	s.certSubject = s.clientCert.Subject.String()
}

// certUserRefused checks tls.client_cert_user before any backend is contacted: the
// certificate's name must be USER. A refusal is a failed login, answered like a wrong
// password (no hint which part was wrong) and logged with the reason.
func (s *session) certUserRefused() (bool, error) {
	reason := s.cfg.ClientCertUser.CheckUser(s.clientCert, s.user)
	if reason == "" {
		return false, nil
	}
	s.srv.obs.Login("failed")
	return true, s.failedLogin("login refused by client certificate", "reason", reason, "client_cert_user", s.cfg.ClientCertUser.String())
}
