package main

import (
	"context"
	"fmt"
	"time"

	"github.com/cometbft/cometbft/libs/log"

	"github.com/emrchain/emrchain/offchain/sidecar"
)

// emergencyCheckTimeout bounds the start-up check of the emergency
// service's key against the chain.
const emergencyCheckTimeout = 30 * time.Second

// checkEmergencyService logs whether the chain has the sidecar's emergency
// key as its service's (sidecar.Server.CheckEmergencyService): a wrong key
// releases nothing, and the operator should know before a clinician needs
// it. It does not stop the sidecar: the service may be registered, or its
// key rotated, after the sidecar starts.
func checkEmergencyService(ctx context.Context, srv *sidecar.Server, c sidecarConfig, logger log.Logger) {
	if c.emergency == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, emergencyCheckTimeout)
	defer cancel()
	if err := srv.CheckEmergencyService(ctx); err != nil {
		logger.Error("the emergency service cannot release data keys until this is fixed", "service", fmt.Sprintf("%X", c.emergency.Address()), "err", err)
		return
	}
	logger.Info("emergency service ready: releasing data keys against committed emergency reads", "service", fmt.Sprintf("%X", c.emergency.Address()))
}
