/* libmicrohttpd glue: one thread per connection, so concurrent clients are
 * served side by side (and injected latency only delays its own request).
 * Hands every request to hgf_sim_dispatch, stamps responses with
 * x-amzn-RequestId and a Date from the simulator's clock (which may be
 * offset), closes the connection without an answer when a drop was
 * injected, and logs one line per request to stderr (never a secret or the
 * Authorization header).
 *
 * The socket is bound before the services are built, so the port (and the
 * registry URLs that embed it) is known before the first request.
 *
 * Ownership: the server borrows every service in hgf_sim_services; they
 * must outlive hgf_sim_server_stop(). */
#ifndef ECRSIM_SERVER_H
#define ECRSIM_SERVER_H

#include <netinet/in.h>
#include <stdint.h>

#include "dispatch.h"
#include "hgfleet/err.h"

typedef struct hgf_sim_server hgf_sim_server;

/* Binds and listens on addr (port 0 = ephemeral). HGF_EFAIL when it cannot. */
int hgf_sim_server_bind(const struct sockaddr_in *addr, hgf_sim_server **out, hgf_err *err);
/* The port actually bound. */
uint16_t hgf_sim_server_port(const hgf_sim_server *s);
/* Serves HTTPS (libmicrohttpd over GnuTLS) with the PEM certificate chain
 * and private key in these files; call before hgf_sim_server_start.
 * HGF_EINPUT names the flag of an unreadable file. */
int hgf_sim_server_set_tls(hgf_sim_server *s, const char *cert_file, const char *key_file,
                           hgf_err *err);
/* "https" after hgf_sim_server_set_tls, else "http". */
const char *hgf_sim_server_scheme(const hgf_sim_server *s);
/* Starts serving the bound socket. HGF_EFAIL when libmicrohttpd cannot. */
int hgf_sim_server_start(hgf_sim_server *s, const hgf_sim_services *svc, hgf_err *err);
/* Stops accepting, closes connections, joins threads and frees s. */
void hgf_sim_server_stop(hgf_sim_server *s);

#endif
