// Package control is the running daemon's local control socket: "nfqguard
// status" reads the engine's state through it, "nfqguard reload" asks for
// the rule file to be loaded again.
//
// The socket is a unix stream socket, mode 0600 in a directory the daemon
// creates with mode 0700, so only root (the daemon's user) can connect;
// the server also checks the peer's credentials. Each connection carries
// one request and one response, each a JSON object on one line:
//
//	→ {"cmd":"status","top":10}
//	← {"ok":true,"status":{…}}
//	→ {"cmd":"reload"}
//	← {"ok":false,"error":"config.toml:12:3: …","reload":{…}}
package control
