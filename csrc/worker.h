/* worker.h — the dataplane's threads and the instance they share. */
#ifndef EF_WORKER_H
#define EF_WORKER_H

#include <pthread.h>

#include "api.h"
#include "sa.h"
#include "udp.h"

enum ef_worker_kind { EF_WORKER_TX, EF_WORKER_RX };

struct ef_dp;

struct ef_worker {
	struct ef_dp *dp;
	int idx; /* which of the SA's per-worker crypto contexts this thread uses */
	enum ef_worker_kind kind;
	pthread_t thread;
	int started;
	struct ef_stats st; /* written by this thread only, read with relaxed atomics */
	struct ef_batch batch;
	struct mmsghdr out[EF_BATCH];
	struct iovec out_iov[EF_BATCH];
	struct sockaddr_storage out_addr[EF_BATCH];
};

struct ef_dp {
	int tun_fd, udp_fd, ike_fd, stop_fd;
	int udp_family;
	int running;
	int nworkers;            /* per direction */
	struct ef_worker *w;     /* 2 * nworkers: TX first, then RX */
	pthread_rwlock_t lock;   /* readers: workers, per batch; writer: SA changes */
	struct ef_table table;
};

void *ef_worker_main(void *arg);

#endif
