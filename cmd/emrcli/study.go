package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/emrchain/emrchain/internal/durable"
	"github.com/emrchain/emrchain/offchain/crypto"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

func newStudyCmd(a *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "study",
		Short:   "Register and show research studies",
		Example: "  emrcli study register --from research-registrar --id covid-19 --title \"COVID-19 outcomes\" --pi dr-lab\n  emrcli study show covid-19",
	}
	cmd.AddCommand(newStudyRegisterCmd(a), newStudyShowCmd(a), newStudyKeygenCmd(a))
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
hex, or by default the principal investigator's registered encryption key, so
the PI decrypts shares with the key in their own keyring (emrcli download
--share). A separate study key (emrcli study keygen) can be handed to several
researchers of the study; they pass its file to download --study-key-file.`,
		Example: `  emrcli study register --from research-registrar --id covid-19 --title "COVID-19 outcomes" --pi dr-lab`,
		Args:    noArgs,
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
	a.keyFlag(cmd, &from, "from", "registrar key that signs")
	f.StringVar(&id, "id", "", "study id")
	f.StringVar(&title, "title", "", "study title")
	f.StringVar(&pi, "pi", "", "principal investigator (address or key name)")
	f.StringVar(&studyKey, "study-key", "", "X25519 public key shared data is encrypted to (hex; default: the PI's)")
	f.BoolVar(&async, "async", false, "do not wait for the transaction to commit")
	return cmd
}

func newStudyShowCmd(a *cli) *cobra.Command {
	return &cobra.Command{
		Use:     "show ID",
		Short:   "Show a study (verified)",
		Example: "  emrcli study show covid-19",
		Args:    exactArgs(1, "one study ID"),
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
			if resp.Study == nil {
				return errors.New("no study in the answer")
			}
			v := viewStudy(resp.Study)
			if v.Closed, err = studyClosed(ctx, c, info.Height, v.ID); err != nil {
				return err
			}
			out := struct {
				studyView
				provenance
			}{v, viewInfo(info)}
			return a.emit(out, func(w io.Writer) { v.text(w); out.provenance.text(w) })
		},
	}
}

func newStudyKeygenCmd(a *cli) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "keygen --output FILE",
		Short: "Generate a study key pair: the private key to FILE (0600), the public key printed",
		Long: `keygen makes an X25519 key pair for a study whose shared data several
researchers should decrypt. The private key is written in hex to FILE (mode
0600, never overwritten): hand it to the study's researchers out of band. Give
the printed public key to the registrar (emrcli study register --study-key);
researchers decrypt shares with emrcli download --share N --study-key-file FILE.
Without a study key of its own, a study uses the principal investigator's
encryption key and needs none of this.`,
		Example: `  emrcli study keygen --output covid-19.studykey
  emrcli study register --from research-registrar --id covid-19 --title "COVID-19 outcomes" --pi dr-lab --study-key <printed hex>`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output == "" {
				return usagef("--output FILE is required")
			}
			k, err := crypto.GenerateEncryptionKey()
			if err != nil {
				return err
			}
			// Durable, name included, before the public key is shown: a
			// study registered with a key whose private half a crash lost
			// can never read what is shared with it.
			secret := []byte(hex.EncodeToString(crypto.MarshalEncryptionPrivateKey(k)) + "\n")
			err = durable.CreateFile(output, secret, 0o600)
			clear(secret)
			if err != nil {
				return err
			}
			out := struct {
				PublicKey string `json:"study_pub_key"`
				File      string `json:"private_key_file"`
			}{hex.EncodeToString(crypto.MarshalEncryptionPublicKey(k.PublicKey())), output}
			return a.emit(out, func(w io.Writer) {
				fmt.Fprintf(w, "study private key written to %s (keep it secret)\n", out.File)
				fmt.Fprintf(w, "study public key: %s\n", out.PublicKey)
			})
		},
	}
	cmd.Flags().StringVar(&output, "output", "", "file for the private key (must not exist)")
	return cmd
}
