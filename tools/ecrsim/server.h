/* libmicrohttpd glue: one thread per connection, so concurrent clients are
 * served side by side. Routes POST / (AWS JSON 1.1, SigV4-checked) to the
 * ECR handler and /_sim/ to the control API, stamps every response with
 * x-amzn-RequestId (MHD adds Date), counts calls and logs one line per
 * request to stderr (never a secret or the Authorization header).
 *
 * Ownership: the server borrows every service in hgf_sim_services; they
 * must outlive hgf_sim_server_stop(). */
#ifndef ECRSIM_SERVER_H
#define ECRSIM_SERVER_H

#include <netinet/in.h>
#include <stdint.h>

#include "auth.h"
#include "ecr_api.h"
#include "fleet.h"
#include "hgfleet/err.h"
#include "stats.h"

typedef struct hgf_sim_services {
    hgf_sim_fleet *fleet;
    hgf_sim_auth *auth;
    hgf_sim_ecr *ecr;
    hgf_sim_stats *stats;
} hgf_sim_services;

typedef struct hgf_sim_server hgf_sim_server;

/* Listens on addr (port 0 = ephemeral). HGF_EFAIL when it cannot bind. */
int hgf_sim_server_start(const struct sockaddr_in *addr, const hgf_sim_services *svc,
                         hgf_sim_server **out, hgf_err *err);
/* The port actually bound. */
uint16_t hgf_sim_server_port(const hgf_sim_server *s);
/* Stops accepting, closes connections, joins threads and frees s. */
void hgf_sim_server_stop(hgf_sim_server *s);

#endif
