/* The other end of the ring, written in C with the xen/io/ring.h macros exactly as a Linux
 * frontend/backend drives them. Used to prove BackRing/FrontRing interoperate with the macros. */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <xen/io/blkif.h>
#include <xen/io/netif.h>
#include <xen/io/sndif.h>

#ifdef __cplusplus
extern "C" {
#endif

/* __CONST_RING_SIZE / __RING_SIZE for `bytes` of shared memory. */
unsigned cpeer_const_size_blkif(size_t bytes);
unsigned cpeer_const_size_netif_tx(size_t bytes);
unsigned cpeer_const_size_netif_rx(size_t bytes);
unsigned cpeer_const_size_sndif(size_t bytes);
unsigned cpeer_ptr_size_blkif(void *sring, size_t bytes);

/* blkif front (XEN_FRONT_RING_INIT, RING_PUSH_REQUESTS_AND_CHECK_NOTIFY, ...). */
void cpeer_blk_front_init(blkif_front_ring_t *r, void *sring, size_t bytes);
/* Queue n requests and push; returns the macro's notify flag, or -1 if the ring is full. */
int cpeer_blk_front_push(blkif_front_ring_t *r, const struct blkif_request *reqs, unsigned n);
/* Take up to max responses (stops at rsp_prod); returns how many. */
unsigned cpeer_blk_front_take(blkif_front_ring_t *r, struct blkif_response *out, unsigned max);
int cpeer_blk_front_final_check(blkif_front_ring_t *r);

/* blkif back (BACK_RING_INIT, RING_COPY_REQUEST, RING_PUSH_RESPONSES_AND_CHECK_NOTIFY, ...). */
void cpeer_blk_back_init(blkif_back_ring_t *r, void *sring, size_t bytes);
/* Take up to max requests as blkback does; returns count, or -1 on RING_REQUEST_PROD_OVERFLOW. */
int cpeer_blk_back_take(blkif_back_ring_t *r, struct blkif_request *out, unsigned max);
int cpeer_blk_back_respond(blkif_back_ring_t *r, const struct blkif_response *rsps, unsigned n);
int cpeer_blk_back_final_check(blkif_back_ring_t *r);

/* netif tx front, for a second ring type with different entry sizes. */
void cpeer_nettx_front_init(netif_tx_front_ring_t *r, void *sring, size_t bytes);
int cpeer_nettx_front_push(netif_tx_front_ring_t *r, const struct netif_tx_request *reqs, unsigned n);
unsigned cpeer_nettx_front_take(netif_tx_front_ring_t *r, struct netif_tx_response *out, unsigned max);

#ifdef __cplusplus
}
#endif
