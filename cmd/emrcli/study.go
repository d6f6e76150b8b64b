package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/emrchain/emrchain/app"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

func appAddress(pub []byte) []byte { return app.AddressOf(pub) }

func newStudyCmd(a *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "study",
		Short:   "Register and show research studies",
		Example: "  emrcli study register --from research-registrar --id covid-19 --title \"COVID-19 outcomes\" --pi dr-who\n  emrcli study show covid-19",
	}
	cmd.AddCommand(newStudyRegisterCmd(a), newStudyShowCmd(a))
	return cmd
}

func newStudyRegisterCmd(a *cli) *cobra.Command {
	var from, id, title, pi, studyKey string
	var async bool
	cmd := &cobra.Command{
		Use:   "register --from REGISTRAR --id ID --title TITLE --pi MEMBER",
		Short: "Register a study of your (research) organization",
		Long: `A registrar of a research organization registers a study led by one of its
researchers (--pi). Shared data is encrypted to the study key: --study-key in
hex, or by default the principal investigator's registered encryption key.`,
		Example: `  emrcli study register --from research-registrar --id covid-19 --title "COVID-19 outcomes" --pi dr-who`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if id == "" || title == "" || pi == "" {
				return usagef("--id, --title and --pi are required")
			}
			piAddr, err := a.address(pi)
			if err != nil {
				return err
			}
			k, err := a.key(from)
			if err != nil {
				return err
			}
			var sk []byte
			if studyKey != "" {
				var ok bool
				if sk, ok = decodeHex(studyKey, 32); !ok {
					return usagef("--study-key: want 64 hex characters")
				}
			} else {
				c, err := a.client(ctx)
				if err != nil {
					return err
				}
				m, err := c.Member(ctx, piAddr)
				if err != nil {
					return fmt.Errorf("principal investigator: %w", err)
				}
				sk = m.EncPubKey
			}
			msg := &emrv1.Msg{Sum: &emrv1.Msg_RegisterStudy{RegisterStudy: &emrv1.MsgRegisterStudy{
				StudyId: id, Title: title, PrincipalInvestigator: piAddr, StudyPubKey: sk,
			}}}
			res, err := a.submit(ctx, k, msg, async)
			if err != nil {
				return err
			}
			out := struct {
				Study string  `json:"study"`
				Tx    *txView `json:"tx"`
			}{id, viewTx(res)}
			return a.emit(out, func(w io.Writer) {
				fmt.Fprintf(w, "registered study %s\n", id)
				out.Tx.text(w)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "registrar key that signs")
	f.StringVar(&id, "id", "", "study id")
	f.StringVar(&title, "title", "", "study title")
	f.StringVar(&pi, "pi", "", "principal investigator (address or key name)")
	f.StringVar(&studyKey, "study-key", "", "X25519 public key shared data is encrypted to (hex; default: the PI's)")
	f.BoolVar(&async, "async", false, "do not wait for the transaction to commit")
	_ = cmd.RegisterFlagCompletionFunc("from", a.completeKeys)
	return cmd
}

func newStudyShowCmd(a *cli) *cobra.Command {
	return &cobra.Command{
		Use:     "show ID",
		Short:   "Show a study (verified)",
		Example: "  emrcli study show covid-19",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("want one study ID, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			var resp emrv1.QueryStudyResponse
			info, err := c.QueryInfo(ctx, "Study", &emrv1.QueryStudyRequest{Id: args[0]}, &resp)
			if err != nil {
				return err
			}
			v := viewStudy(resp.Study)
			out := struct {
				studyView
				provenance
			}{v, viewInfo(info)}
			return a.emit(out, func(w io.Writer) { v.text(w); out.provenance.text(w) })
		},
	}
}
