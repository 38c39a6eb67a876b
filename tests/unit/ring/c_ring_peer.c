#include "c_ring_peer.h"

#include <string.h>

/* Interface version 0 maps xen_mb() & co. to mb()/rmb()/wmb(), which a kernel provides. */
#define mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define wmb() __atomic_thread_fence(__ATOMIC_RELEASE)

unsigned cpeer_const_size_blkif(size_t bytes) { return __CONST_RING_SIZE(blkif, bytes); }
unsigned cpeer_const_size_netif_tx(size_t bytes) { return __CONST_RING_SIZE(netif_tx, bytes); }
unsigned cpeer_const_size_netif_rx(size_t bytes) { return __CONST_RING_SIZE(netif_rx, bytes); }
unsigned cpeer_const_size_sndif(size_t bytes) { return __CONST_RING_SIZE(xen_sndif, bytes); }
unsigned cpeer_ptr_size_blkif(void *sring, size_t bytes) {
  blkif_sring_t *s = sring;
  return __RING_SIZE(s, bytes);
}

void cpeer_blk_front_init(blkif_front_ring_t *r, void *sring, size_t bytes) {
  blkif_sring_t *s = sring;
  XEN_FRONT_RING_INIT(r, s, bytes);
}

int cpeer_blk_front_push(blkif_front_ring_t *r, const struct blkif_request *reqs, unsigned n) {
  int notify;
  if (RING_FREE_REQUESTS(r) < n) return -1;
  for (unsigned i = 0; i < n; i++) {
    *RING_GET_REQUEST(r, r->req_prod_pvt) = reqs[i];
    r->req_prod_pvt++;
  }
  RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(r, notify);
  return notify;
}

unsigned cpeer_blk_front_take(blkif_front_ring_t *r, struct blkif_response *out, unsigned max) {
  unsigned n = 0;
  RING_IDX rp = r->sring->rsp_prod;
  rmb();
  while (r->rsp_cons != rp && n < max) {
    RING_COPY_RESPONSE(r, r->rsp_cons, &out[n]);
    r->rsp_cons++;
    n++;
  }
  return n;
}

int cpeer_blk_front_final_check(blkif_front_ring_t *r) {
  int more;
  RING_FINAL_CHECK_FOR_RESPONSES(r, more);
  return more != 0;
}

void cpeer_blk_back_init(blkif_back_ring_t *r, void *sring, size_t bytes) {
  blkif_sring_t *s = sring;
  BACK_RING_INIT(r, s, bytes);
}

int cpeer_blk_back_take(blkif_back_ring_t *r, struct blkif_request *out, unsigned max) {
  unsigned n = 0;
  RING_IDX rc = r->req_cons;
  RING_IDX rp = r->sring->req_prod;
  rmb();
  if (RING_REQUEST_PROD_OVERFLOW(r, rp)) return -1;
  while (rc != rp && n < max) {
    if (RING_REQUEST_CONS_OVERFLOW(r, rc)) break;
    RING_COPY_REQUEST(r, rc, &out[n]);
    r->req_cons = ++rc;
    n++;
  }
  return (int)n;
}

int cpeer_blk_back_respond(blkif_back_ring_t *r, const struct blkif_response *rsps, unsigned n) {
  int notify;
  for (unsigned i = 0; i < n; i++) {
    *RING_GET_RESPONSE(r, r->rsp_prod_pvt) = rsps[i];
    r->rsp_prod_pvt++;
  }
  RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(r, notify);
  return notify;
}

int cpeer_blk_back_final_check(blkif_back_ring_t *r) {
  int more;
  RING_FINAL_CHECK_FOR_REQUESTS(r, more);
  return more != 0;
}

void cpeer_nettx_front_init(netif_tx_front_ring_t *r, void *sring, size_t bytes) {
  netif_tx_sring_t *s = sring;
  XEN_FRONT_RING_INIT(r, s, bytes);
}

int cpeer_nettx_front_push(netif_tx_front_ring_t *r, const struct netif_tx_request *reqs, unsigned n) {
  int notify;
  if (RING_FREE_REQUESTS(r) < n) return -1;
  for (unsigned i = 0; i < n; i++) {
    *RING_GET_REQUEST(r, r->req_prod_pvt) = reqs[i];
    r->req_prod_pvt++;
  }
  RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(r, notify);
  return notify;
}

unsigned cpeer_nettx_front_take(netif_tx_front_ring_t *r, struct netif_tx_response *out, unsigned max) {
  unsigned n = 0;
  RING_IDX rp = r->sring->rsp_prod;
  rmb();
  while (r->rsp_cons != rp && n < max) {
    RING_COPY_RESPONSE(r, r->rsp_cons, &out[n]);
    r->rsp_cons++;
    n++;
  }
  return n;
}
