// floor-c: the fastest userspace NFQUEUE consumer this host can run, for
// `nfqguard bench`. It binds one queue with libnetfilter_queue, copies whole
// packets (range 0xffff), takes GSO packets whole, sets the queue length to
// 4096 and a large socket receive buffer, answers NF_ACCEPT to every packet,
// prints "ready" once bound and exits cleanly on SIGTERM or SIGINT.
//
// Build: gcc -O2 -o floor-c floor.c -lnetfilter_queue
// Usage: floor-c [QUEUE]   (default 0)

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netlink.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <libnetfilter_queue/libnetfilter_queue.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

enum {
	copy_range = 0xffff,
	queue_maxlen = 4096,
	rcvbuf_bytes = 16 << 20,
};

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
	(void)sig;
	stop = 1;
}

static int accept_all(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa, void *data) {
	(void)msg;
	(void)data;
	struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
	if (ph == NULL)
		return 0;
	return nfq_set_verdict(qh, ntohl(ph->packet_id), NF_ACCEPT, 0, NULL);
}

int main(int argc, char **argv) {
	unsigned long queue = 0;
	if (argc > 2 || (argc == 2 && (queue = strtoul(argv[1], NULL, 10)) > 65535)) {
		fprintf(stderr, "usage: floor-c [QUEUE]\n");
		return 2;
	}

	// No SA_RESTART: recv must return EINTR so the loop sees stop.
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	struct nfq_handle *h = nfq_open();
	if (h == NULL) {
		perror("floor-c: nfq_open");
		return 1;
	}
	struct nfq_q_handle *qh = nfq_create_queue(h, (uint16_t)queue, accept_all, NULL);
	if (qh == NULL) {
		perror("floor-c: bind queue");
		nfq_close(h);
		return 1;
	}
	if (nfq_set_mode(qh, NFQNL_COPY_PACKET, copy_range) < 0) {
		perror("floor-c: set copy mode");
		return 1;
	}
	if (nfq_set_queue_maxlen(qh, queue_maxlen) < 0) {
		perror("floor-c: set queue length");
		return 1;
	}
	/* As nfqguard does: take GSO packets whole rather than segmented. */
	if (nfq_set_queue_flags(qh, NFQA_CFG_F_GSO, NFQA_CFG_F_GSO) < 0) {
		perror("floor-c: set GSO flag");
		return 1;
	}
	int fd = nfq_fd(h);
	int size = rcvbuf_bytes;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size) < 0) {
		perror("floor-c: set receive buffer");
		return 1;
	}
	// Overruns drop packets (the kernel counts them); they must not
	// interrupt receiving.
	int one = 1;
	setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);

	printf("ready\n");
	fflush(stdout);

	static char buf[copy_range + 4096] __attribute__((aligned));
	while (!stop) {
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		if (n < 0) {
			if (errno == EINTR || errno == ENOBUFS)
				continue;
			perror("floor-c: recv");
			break;
		}
		nfq_handle_packet(h, buf, (int)n);
	}
	nfq_destroy_queue(qh);
	nfq_close(h);
	return stop ? 0 : 1;
}
