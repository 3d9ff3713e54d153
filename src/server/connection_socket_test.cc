#include "server/connection_socket.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

namespace prefixd {
namespace {

int PortOfSocket(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

// A listening socket on 127.0.0.1, a client connected to it and the accepted end.
struct Loopback {
  Loopback() {
    listener = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    listen(listener, 4);
    server_port = PortOfSocket(listener);
    client = socket(AF_INET, SOCK_STREAM, 0);
    a.sin_port = htons(server_port);
    connect(client, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    accepted = accept(listener, nullptr, nullptr);
    client_port = PortOfSocket(client);
  }
  ~Loopback() {
    for (int fd : {listener, client, accepted}) {
      if (fd >= 0) close(fd);
    }
  }
  int listener = -1, client = -1, accepted = -1;
  int server_port = 0, client_port = 0;
};

TEST(ConnectionSocket, FindsTheAcceptedSocketByAddress) {
  Loopback l;
  ASSERT_GE(l.accepted, 0);
  EXPECT_EQ(FindConnectionSocket("127.0.0.1", l.client_port, l.server_port), l.accepted);
  EXPECT_EQ(FindConnectionSocket("127.0.0.2", l.client_port, l.server_port), -1);
  EXPECT_EQ(FindConnectionSocket("127.0.0.1", l.client_port + 1, l.server_port), -1);
  // The listening socket has no peer, so it is never the answer.
  EXPECT_NE(FindConnectionSocket("127.0.0.1", 0, l.server_port), l.listener);
}

TEST(ConnectionSocket, SeesThePeerClose) {
  Loopback l;
  EXPECT_FALSE(PeerClosed(l.accepted));
  EXPECT_FALSE(PeerClosed(-1));
  // Unread data is not a close.
  ASSERT_EQ(write(l.client, "x", 1), 1);
  EXPECT_FALSE(PeerClosed(l.accepted));
  close(l.client);
  l.client = -1;
  EXPECT_TRUE(PeerClosed(l.accepted));
}

TEST(ConnectionSocket, ShutdownConnectionsEndsThem) {
  Loopback l;
  ShutdownConnections(l.server_port);
  char c;
  EXPECT_EQ(read(l.client, &c, 1), 0);  // EOF: the server side is shut down
  // The listener still accepts.
  EXPECT_GE(fcntl(l.listener, F_GETFD), 0);
}

}  // namespace
}  // namespace prefixd
