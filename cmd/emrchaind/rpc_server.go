package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	cmtcfg "github.com/cometbft/cometbft/config"
	"github.com/cometbft/cometbft/libs/log"
	cmtpubsub "github.com/cometbft/cometbft/libs/pubsub"
	"github.com/cometbft/cometbft/node"
	rpcserver "github.com/cometbft/cometbft/rpc/jsonrpc/server"
	rpctypes "github.com/cometbft/cometbft/rpc/jsonrpc/types"
	"github.com/rs/cors"

	"github.com/emrchain/emrchain/app"
)

// rpcService serves CometBFT's RPC (config.toml [rpc] laddr: the JSON-RPC
// and URI routes and /websocket) in place of the node, as the node's own
// startRPC would, with two checks CometBFT's server does not make:
//
//   - the Host check of hostFilter ([app] allowed_hosts), on TCP listeners,
//     against DNS rebinding;
//   - an Origin check on /websocket. CometBFT's upgrader accepts any
//     Origin, and browsers apply no same-origin rule to WebSockets: any web
//     page opened in a browser that reaches the node could call every route
//     over one (cross-site WebSocket hijacking), reading the whole state and
//     every block. A WebSocket that a browser opens (it sends Origin) is
//     accepted only from an origin of [rpc] cors_allowed_origins; programs
//     send no Origin and are not affected.
//
// start takes the listeners just before the node starts, after its replay
// (listenRPC), and serves them once it has started (startRPCService), with
// CometBFT's laddr blanked for the node's Start (startNodeWithoutRPC). In
// between, a connection is accepted and waits, briefly: start waits for a
// future genesis time before it takes the listeners (waitForGenesis).
type rpcService struct {
	listeners []net.Listener
}

// rpcListener is one address of [rpc] laddr, listened on.
type rpcListener struct {
	net.Listener
	unix bool // a socket no browser reaches: no Host check
}

// listenRPC listens on every address of [rpc] laddr (comma separated, as
// CometBFT reads it), each bounded to max_open_connections.
func listenRPC(c *cmtcfg.RPCConfig) (_ []rpcListener, err error) {
	var out []rpcListener
	defer func() {
		if err != nil {
			for _, l := range out {
				_ = l.Close()
			}
		}
	}()
	for addr := range strings.SplitSeq(c.ListenAddress, ",") {
		addr = strings.TrimSpace(addr)
		if addr == "" {
			continue
		}
		l, err := rpcserver.Listen(addr, c.MaxOpenConnections)
		if err != nil {
			return nil, fmt.Errorf("rpc server: listen on %s ([rpc] laddr in config.toml or --rpc.laddr): %w", addr, err)
		}
		out = append(out, rpcListener{Listener: l, unix: strings.HasPrefix(addr, "unix://")})
	}
	return out, nil
}

// startRPCService serves CometBFT's routes of the started node n on
// listeners, as node.startRPC does (unsafe routes when [rpc] unsafe, CORS,
// TLS, the server limits of config.toml), behind hosts and the WebSocket
// Origin check.
func startRPCService(n *node.Node, c *cmtcfg.RPCConfig, listeners []rpcListener, hosts hostFilter, logger log.Logger) (*rpcService, error) {
	env, err := n.ConfigureRPC()
	if err != nil {
		return nil, fmt.Errorf("rpc server: %w", err)
	}
	routes := env.GetRoutes()
	if c.Unsafe {
		env.AddUnsafeRoutes(routes)
	}
	conf := rpcserver.DefaultConfig()
	conf.MaxRequestBatchSize = c.MaxRequestBatchSize
	conf.MaxBodyBytes = c.MaxBodyBytes
	conf.MaxHeaderBytes = c.MaxHeaderBytes
	conf.MaxOpenConnections = c.MaxOpenConnections
	if conf.WriteTimeout <= c.TimeoutBroadcastTxCommit {
		conf.WriteTimeout = c.TimeoutBroadcastTxCommit + time.Second
	}
	logger = logger.With("module", "rpc-server")
	wmLogger := logger.With("protocol", "websocket")
	// One CORS policy answers both the browsers' cross-origin requests and
	// which origins may open a WebSocket; none when no origin is listed
	// (rs/cors would read an empty list as "any").
	var crs *cors.Cors
	if c.IsCorsEnabled() {
		crs = cors.New(cors.Options{
			AllowedOrigins: c.CORSAllowedOrigins,
			AllowedMethods: c.CORSAllowedMethods,
			AllowedHeaders: c.CORSAllowedHeaders,
		})
	}
	s := &rpcService{}
	for _, l := range listeners {
		wm := rpcserver.NewWebsocketManager(routes,
			rpcserver.OnDisconnect(func(remoteAddr string) {
				err := env.EventBus.UnsubscribeAll(context.Background(), remoteAddr)
				if err != nil && !errors.Is(err, cmtpubsub.ErrSubscriptionNotFound) {
					wmLogger.Error("Failed to unsubscribe addr from events", "addr", remoteAddr, "err", err)
				}
			}),
			rpcserver.ReadLimit(conf.MaxBodyBytes),
			rpcserver.WriteChanCapacity(c.WebSocketWriteBufferSize),
		)
		wm.SetLogger(wmLogger)
		wm.CheckOrigin = func(r *http.Request) bool {
			return r.Header.Get("Origin") == "" || (crs != nil && crs.OriginAllowed(r))
		}
		wm.Error = refuseWebSocket
		mux := http.NewServeMux()
		mux.HandleFunc("/websocket", wm.WebsocketHandler)
		mux.HandleFunc("/v1/websocket", wm.WebsocketHandler)
		rpcserver.RegisterRPCFuncs(mux, routes, logger)
		var h http.Handler = mux
		if crs != nil {
			h = crs.Handler(h)
		}
		if !l.unix {
			h = hosts.wrap(h, refuseRPC)
		}
		go func() {
			var err error
			if c.IsTLSEnabled() {
				err = rpcserver.ServeTLS(l, h, c.CertFile(), c.KeyFile(), logger, conf)
			} else {
				err = rpcserver.Serve(l, h, logger, conf)
			}
			if err != nil && !errors.Is(err, net.ErrClosed) {
				logger.Error("rpc server stopped", "address", l.Addr().String(), "err", err)
			}
		}()
		s.listeners = append(s.listeners, l.Listener)
	}
	return s, nil
}

// refuseRPC answers a refused request as a JSON-RPC error, which
// CometBFT's clients show as such.
func refuseRPC(w http.ResponseWriter, why string) {
	_ = rpcserver.WriteRPCResponseHTTPError(w, http.StatusForbidden, rpctypes.RPCInvalidRequestError(nil, errors.New(why)))
}

// refuseWebSocket answers a refused WebSocket handshake as a JSON-RPC
// error saying why: for a browser's Origin, which setting lists origins.
func refuseWebSocket(w http.ResponseWriter, r *http.Request, status int, reason error) {
	if origin := r.Header.Get("Origin"); status == http.StatusForbidden && origin != "" {
		reason = fmt.Errorf("origin %s is not in this node's config.toml [rpc] cors_allowed_origins: "+
			"a WebSocket that a browser opens is accepted only from a listed origin", app.QuoteInput(origin))
	}
	_ = rpcserver.WriteRPCResponseHTTPError(w, status, rpctypes.RPCInvalidRequestError(nil, reason))
}

// Name implements service.
func (s *rpcService) Name() string { return "rpc" }

// Stop closes the listeners, as the node's own OnStop does for the RPC it
// serves.
func (s *rpcService) Stop(context.Context) error {
	var errs []error
	for _, l := range s.listeners {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
