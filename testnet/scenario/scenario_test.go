package scenario_test

import (
	"testing"

	"github.com/emrchain/emrchain/app/apptest"
	"github.com/emrchain/emrchain/testnet/scenario"
)

func TestCareFlowInProcess(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	scenario.CareFlow(t, scenario.InProcess{Chain: c}, scenario.NewCast(apptest.Registrar(apptest.HospitalA), "inproc"), apptest.HospitalA)
}

func TestBreakGlassInProcess(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	scenario.BreakGlass(t, scenario.InProcess{Chain: c}, scenario.NewCast(apptest.Registrar(apptest.HospitalA), "inproc"), apptest.HospitalA)
}
