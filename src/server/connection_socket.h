// The sockets of the HTTP server's connections, found by address. cpp-httplib 0.11 does not
// hand the connection to a handler, so a handler waiting for the engine cannot otherwise tell
// whether its client is still there; and httplib's stop() leaves threads waiting out the
// keep-alive timeout on idle connections. Both are solved by looking the sockets up in
// /proc/self/fd (a few hundred cheap syscalls, once per generation request and at shutdown).
// Rejected: overriding httplib::Server::process_and_close_socket to remember the socket per
// thread, as the base implementation it would have to call is private.
//
// Linux only. Thread safety: stateless; any thread.
#pragma once

#include <string>

namespace prefixd {

// The socket of the connection from remote_addr:remote_port to local port `local_port`
// (numeric host, as httplib writes it), or -1 when none is open.
int FindConnectionSocket(const std::string& remote_addr, int remote_port, int local_port);

// True when the peer of connected socket `fd` closed its end (or the socket broke); false
// for fd < 0. A client that half-closes after sending its request (shutdown(SHUT_WR)) reads
// as gone; HTTP clients do not do that.
bool PeerClosed(int fd);

// shutdown(SHUT_RDWR) on every connected socket whose local port is `port`.
void ShutdownConnections(int port);

}  // namespace prefixd
