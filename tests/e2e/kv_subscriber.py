#!/usr/bin/env python3
"""A KV event subscriber, as a router in front of prefixd replicas runs one (README, "KV
events"): a ZMQ SUB socket on the stream and a DEALER on the replay socket; it keeps the block
hashes resident per medium, applies batches in sequence order, detects missed batches from
the sequence numbers and fetches them from the replay socket.

Driven by tests/e2e/kv_events.test.mjs over stdin/stdout, one JSON object per line each way:
  {"cmd": "connect", "pub": ENDPOINT, "replay": ENDPOINT}  a fresh view of a (new) server
  {"cmd": "drop", "n": N}       ignore the next N live batches (as if the network lost them)
  {"cmd": "sync"}               apply what arrived until the stream is quiet, then the tail
                                -> {"next": SEQ, "gaps": N, "replayed": N}
  {"cmd": "media", "hashes": [HEX16, ...]}  -> {"media": [[MEDIUM, ...], ...]} per hash
Exits on end of input. Needs Debian's python3-zmq and python3-msgpack.
"""
import json
import struct
import sys

import msgpack
import zmq

QUIET_MS = 300         # a stream silent this long has delivered what was sent
REPLAY_TIMEOUT_MS = 5000


def seq_of(frame):
    return struct.unpack('>q', frame)[0]


class Subscriber:
    def __init__(self, ctx, pub, replay):
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b'')
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.connect(pub)
        self.dealer = ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.connect(replay)
        self.media = {}  # medium -> set of 16-hex-digit hashes
        self.next = 0    # the next sequence number to apply
        self.gaps = 0
        self.replayed = 0
        self.drop = 0

    def close(self):
        self.sub.close()
        self.dealer.close()

    def apply(self, payload):
        _ts, events = msgpack.unpackb(payload, raw=False)[:2]
        for e in events:
            if e[0] == 'BlockStored':
                self.media.setdefault(e[6], set()).update('%016x' % h for h in e[1])
            elif e[0] == 'BlockRemoved':
                self.media.setdefault(e[2], set()).difference_update('%016x' % h for h in e[1])
            elif e[0] == 'AllBlocksCleared':
                self.media[e[1]] = set()
        self.next += 1

    def replay(self):
        """Asks for every batch from self.next on and applies them, up to the end marker."""
        self.dealer.send_multipart([b'', struct.pack('>q', self.next)])
        while True:
            if not self.dealer.poll(REPLAY_TIMEOUT_MS):
                raise RuntimeError('no answer from the replay socket')
            frames = self.dealer.recv_multipart()
            seq = seq_of(frames[1])
            if seq == -1:
                return
            if seq > self.next:
                raise RuntimeError('batches %d..%d are gone from the replay ring: rebuild the view'
                                   % (self.next, seq - 1))
            if seq == self.next:
                self.apply(frames[2])
                self.replayed += 1

    def sync(self):
        while self.sub.poll(QUIET_MS):
            _topic, seq_frame, payload = self.sub.recv_multipart()
            seq = seq_of(seq_frame)
            if self.drop > 0:
                self.drop -= 1
                continue
            if seq < self.next:
                continue  # had it from a replay
            if seq > self.next:
                self.gaps += 1  # batches self.next .. seq-1 never arrived
                self.replay()
            if seq == self.next:
                self.apply(payload)
        # Batches lost at the very end leave no later batch to reveal them; ask once.
        self.replay()
        return {'next': self.next, 'gaps': self.gaps, 'replayed': self.replayed}


def main():
    ctx = zmq.Context()
    sub = None
    for line in sys.stdin:
        req = json.loads(line)
        try:
            if req['cmd'] == 'connect':
                if sub:
                    sub.close()
                sub = Subscriber(ctx, req['pub'], req['replay'])
                out = {'ok': True}
            elif req['cmd'] == 'drop':
                sub.drop = req['n']
                out = {'ok': True}
            elif req['cmd'] == 'sync':
                out = sub.sync()
            elif req['cmd'] == 'media':
                out = {'media': [sorted(m for m, s in sub.media.items() if h in s) for h in req['hashes']]}
            else:
                out = {'error': 'unknown command ' + req['cmd']}
        except Exception as e:  # the test shows it; the process goes on for the next command
            out = {'error': '%s: %s' % (type(e).__name__, e)}
        print(json.dumps(out), flush=True)
    if sub:
        sub.close()
    ctx.term()


if __name__ == '__main__':
    main()
