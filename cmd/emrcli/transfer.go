package main

import (
	"context"
	"crypto/ecdh"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/keyring"
	"github.com/emrchain/emrchain/offchain/crypto"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// envSidecar lists default sidecar URLs, comma-separated.
const envSidecar = "EMRCLI_SIDECAR"

// defaultSidecar is where "emrchaind start" runs its sidecar by default.
const defaultSidecar = "http://127.0.0.1:7070"

// sidecarFlag adds the repeatable --sidecar flag to a command.
func sidecarFlag(cmd *cobra.Command, urls *[]string) {
	cmd.Flags().StringArrayVar(urls, "sidecar", nil,
		"blob sidecar URL, tried in order (repeatable; default: "+envSidecar+", else config.json \"sidecars\", else "+defaultSidecar+")")
}

// sidecarURLs resolves the sidecars: --sidecar > EMRCLI_SIDECAR >
// config.json "sidecars" > the default.
func (a *cli) sidecarURLs(flag []string) ([]string, error) {
	urls := splitList(flag)
	if len(urls) == 0 {
		urls = splitList([]string{os.Getenv(envSidecar)})
	}
	if len(urls) == 0 {
		conf, err := a.loadConfig()
		if err != nil {
			return nil, err
		}
		urls = conf.Sidecars
	}
	if len(urls) == 0 {
		urls = []string{defaultSidecar}
	}
	for i, u := range urls {
		u = withScheme(u)
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return nil, usagef("--sidecar %q: want an http:// or https:// URL", urls[i])
		}
		// The same form for the same sidecar: the client asks each URL
		// once.
		urls[i] = strings.TrimRight(u, "/")
	}
	return urls, nil
}

// progressLine draws one "\r"-rewritten progress line on a terminal.
type progressLine struct {
	w     io.Writer
	phase string
	last  time.Time
	drawn bool
}

// newProgress returns a progress line on stderr when stderr is a terminal
// (and output is not --json), else nil. A nil *progressLine is usable.
func (a *cli) newProgress() *progressLine {
	f, ok := a.stderr.(*os.File)
	if a.jsonOut || !ok || !isTerminal(f) {
		return nil
	}
	return &progressLine{w: f}
}

// callback is the TransferOptions.Progress of p (nil when p is nil).
func (p *progressLine) callback() func(string, int64, int64) {
	if p == nil {
		return nil
	}
	return p.update
}

func (p *progressLine) update(phase string, done, total int64) {
	now := time.Now()
	if phase == p.phase && now.Sub(p.last) < 100*time.Millisecond && done != total {
		return
	}
	p.phase, p.last, p.drawn = phase, now, true
	line := fmt.Sprintf("\r%-8s %10s", phase, humanBytes(done))
	if total > 0 {
		const width = 30
		frac := min(float64(done)/float64(total), 1)
		fill := int(frac * width)
		line += fmt.Sprintf(" / %-10s [%s%s] %3.0f%%", humanBytes(total), strings.Repeat("#", fill), strings.Repeat(".", width-fill), frac*100)
	}
	fmt.Fprint(p.w, line+"\x1b[K")
}

// finish erases the line.
func (p *progressLine) finish() {
	if p != nil && p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// scratchDir picks the directory for an upload's ciphertext scratch file:
// --temp-dir, else the source file's directory if writable (a tmpfs /tmp
// would hold the ciphertext in memory), else the system's temp dir.
func scratchDir(flag, source string) string {
	if flag != "" {
		return flag
	}
	dir := filepath.Dir(source)
	if f, err := os.CreateTemp(dir, ".emr-probe-*"); err == nil {
		f.Close()
		os.Remove(f.Name())
		return dir
	}
	return ""
}

func newUploadCmd(a *cli) *cobra.Command {
	var from, patient, category, tempDir string
	var sidecars []string
	cmd := &cobra.Command{
		Use:   "upload --from KEY --patient ID --category C FILE",
		Short: "Encrypt a file, upload it to a blob sidecar and add its record",
		Long: `upload encrypts FILE under a fresh data key (AES-256-GCM, streamed in 64 KiB
segments, bound to the patient and category), uploads the ciphertext to the
first --sidecar that stores it, and only then submits AddRecord: the data key
wrapped under the patient's key-encryption key (yours if you are the patient,
else the one sealed to you in your write consent), the SHA-256 and size of
the ciphertext, and your signature as uploader.

The ciphertext is written once to a scratch file (mode 0600, without a name on
Linux) in --temp-dir, by default FILE's directory: the sidecar needs its
SHA-256 before the body, and encrypting twice would give a different
ciphertext (a random salt per file). Memory use does not grow with the file.

If the sidecar or its storage is down, upload fails with the reason and sends
no transaction: no record points at missing data. A progress bar is drawn on
stderr when it is a terminal.`,
		Example: `  emrcli upload --from dr-who --patient 5be1...9f --category lab-results ./cbc-2026-03-01.json
  emrcli upload --from alice --category imaging ./ct-head.dcm --sidecar http://10.0.0.5:7070
  emrcli upload --from dr-who --patient alice --category lab-results report.pdf --json`,
		Args: exactArgs(1, "exactly one FILE to upload"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if category == "" {
				return usagef("--category is required, e.g. lab-results")
			}
			urls, err := a.sidecarURLs(sidecars)
			if err != nil {
				return err
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			if !st.Mode().IsRegular() {
				return usagef("%s is not a regular file", args[0])
			}
			k, pid, c, err := a.signer(ctx, from, patient)
			if err != nil {
				return err
			}
			kek, version, err := a.kekFor(ctx, c, k, pid)
			if err != nil {
				return err
			}
			defer clear(kek)
			prog := a.newProgress()
			res, err := c.Upload(ctx, k, client.UploadRequest{
				PatientID: pid, Category: category, Source: f, Size: st.Size(), KEK: kek, KeyVersion: version,
			}, client.TransferOptions{Sidecars: urls, TempDir: scratchDir(tempDir, args[0]), Progress: prog.callback()})
			prog.finish()
			if err != nil {
				return err
			}
			out := struct {
				PatientID      string  `json:"patient_id"`
				Record         uint64  `json:"record,omitempty"`
				Category       string  `json:"category"`
				File           string  `json:"file"`
				PlaintextSize  int64   `json:"plaintext_size"`
				CiphertextSize int64   `json:"ciphertext_size"`
				SHA256         string  `json:"ciphertext_sha256"`
				ObjectKey      string  `json:"object_key"`
				KeyVersion     uint64  `json:"key_version"`
				Sidecar        string  `json:"sidecar"`
				Tx             *txView `json:"tx"`
			}{
				PatientID: hexStr(pid), Record: res.Sequence, Category: category, File: args[0], PlaintextSize: res.PlaintextSize,
				CiphertextSize: res.CiphertextSize, SHA256: hex.EncodeToString(res.SHA256[:]), ObjectKey: hex.EncodeToString(res.SHA256[:]),
				KeyVersion: version, Sidecar: res.Sidecar, Tx: viewTx(res.Tx),
			}
			return a.emit(out, func(w io.Writer) {
				if out.Record > 0 {
					fmt.Fprintf(w, "uploaded %s as record %d of patient %s\n", out.File, out.Record, out.PatientID)
				} else {
					fmt.Fprintf(w, "uploaded %s for patient %s (record number not found: see emrcli records)\n", out.File, out.PatientID)
				}
				fields(w, "category", out.Category, "size", fmt.Sprintf("%d bytes (%d encrypted)", out.PlaintextSize, out.CiphertextSize),
					"ciphertext sha256", out.SHA256, "sidecar", out.Sidecar)
				out.Tx.text(w)
			})
		},
	}
	f := cmd.Flags()
	a.keyFlag(cmd, &from, "from", "uploader key (the patient or a member with write consent)")
	f.StringVar(&patient, "patient", "", "patient id (hex) or enrolled key name (default: --from's own patient)")
	f.StringVar(&category, "category", "", "record category, e.g. lab-results")
	f.StringVar(&tempDir, "temp-dir", "", "directory of the ciphertext scratch file (default: FILE's directory, else the system's)")
	sidecarFlag(cmd, &sidecars)
	return cmd
}

func newDownloadCmd(a *cli) *cobra.Command {
	var from, patient, output, purposeStr, studyKeyFile, via, reasonStr string
	var record, share uint64
	var reuseAccess, force bool
	var sidecars []string
	cmd := &cobra.Command{
		Use:   "download --from KEY --patient ID (--record N | --share N) -o FILE",
		Short: "Log a read, fetch a record's ciphertext from any sidecar, verify and decrypt it",
		Long: `download --record N:
  1. reads record N with a light-client-verified proof (its SHA-256, size,
     key version and wrapped data key) and unwraps the data key with your key:
     the patient's own, or the one sealed to you in your consent;
  2. checks what can fail without the chain, so that no read is logged for
     nothing: FILE must name a file (not a directory; not an existing file
     unless --force) in a directory that exists, and at least one --sidecar
     must answer (GET /healthz, all at once, a few seconds at most);
  3. logs the read on chain (RecordAccess, purpose --purpose, committed) —
     the patient sees it in emrcli audit; the chain refuses it unless you
     are the patient or hold a standing consent with the right for the
     purpose (read for treatment, share for research);
  4. fetches the ciphertext from the first --sidecar that serves it (the
     sidecar serves it only after the access event is committed, within its
     access window), into a scratch file beside FILE, and checks its SHA-256
     against the verified record: a mismatch ("ciphertext hash mismatch:
     storage or sidecar returned altered data") tries the next sidecar and
     fails if none serves intact data;
  5. decrypts it (every 64 KiB segment authenticated) into a file that has
     no name until it is complete (Linux O_TMPFILE; elsewhere a hidden
     partial file beside FILE), then fsyncs it and links it as FILE (0600).
     On any failure nothing is written: no partial or unverified plaintext.

--reuse-access skips step 3, relying on your access event committed within the
sidecar's access window (to retry a failed download without a second entry).
If the read is logged but no sidecar serves the ciphertext, the error says so,
and when retrying can help (a sidecar down, a transfer cut short) that you may
retry with --reuse-access; when every sidecar refused outright (403: the
sidecars no longer let you read it, e.g. a consent that expired or was revoked
meanwhile; 404: they do not hold it) it says why, and that retrying them will
not help.

download --share N fetches share N of the patient (a record a clinician
re-encrypted for a research study; the sidecar serves it to the study's
principal investigator and the researchers of its organization), checks it
against the verified share and decrypts it with the study key: by default your
own encryption key (a study's key is its principal investigator's unless it
was registered with another one); --study-key-file names a file holding the
study's X25519 private key in hex (emrcli study keygen).

download --record N --purpose emergency is a break-glass read, for a clinician
who holds no consent of the patient, in an emergency. It works only if the
patient opted in to break-glass reads by your organization: granted its
emergency service the emergency right over the record's category ("emrcli
grant --to SERVICE --rights emergency"). You say why (--reason:
patient-incapacitated, immediate-threat or patient-request). The read is
logged on chain as an emergency read naming the service and the reason: the
patient sees it in "emrcli audit" and your organization's auditors review
every one. The steps are those above,
except the data key: you hold no envelope of the patient's key, so after the
ciphertext is fetched the sidecars are asked, in order, for the record's data
key, which the one that runs the service releases, sealed to your registered
encryption key, while your read is within the chain's emergency window
("emrcli params") and the sidecar's access window (app.toml [sidecar]
access_window, 10 minutes by default), whichever is shorter, and the opt-in
stands (a revoked opt-in ends it). --via
names the service (address or key name); by default it is the one of your
organization the patient opted in to for the record's category (the first by
address if there are several). --reuse-access reuses your emergency read
within the window. The chain counts the patients you read in emergencies
over 24 hours against "emergency patients per day" ("emrcli params");
"emrcli emergency-reads" shows your count.`,
		Example: `  emrcli download --from dr-who --patient 5be1...9f --record 3 -o cbc.json
  emrcli download --from alice --record 1 -o ~/my-records/ct-head.dcm
  emrcli download --from dr-who --patient 5be1...9f --record 3 -o cbc.json --reuse-access --sidecar http://10.0.0.6:7070
  emrcli download --from dr-lab --patient 5be1...9f --share 1 -o shared.json
  emrcli download --from dr-er --patient 5be1...9f --record 2 --purpose emergency --reason patient-incapacitated -o allergies.json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if (record == 0) == (share == 0) {
				return usagef("give one of --record N or --share N (numbered from 1: emrcli records and emrcli shares list them)")
			}
			if output == "" {
				return usagef("-o FILE is required")
			}
			purpose, err := parsePurpose(purposeStr)
			if err != nil {
				return err
			}
			emergency := purpose == emrv1.Purpose_PURPOSE_EMERGENCY
			if emergency && share > 0 {
				return usagef("--purpose emergency reads a record (--record N), not a share")
			}
			viaAddr, err := a.viaService(via, purpose)
			if err != nil {
				return err
			}
			reason, err := emergencyReason(reasonStr, purpose, reuseAccess)
			if err != nil {
				return err
			}
			urls, err := a.sidecarURLs(sidecars)
			if err != nil {
				return err
			}
			// Before a passphrase is asked for or the node is: a
			// directory, or a file that exists without --force, is never
			// written (the client checks again before it logs the read).
			if err := client.CheckOutput(output, force); err != nil {
				return err
			}
			var studyKey *ecdh.PrivateKey // read before any passphrase prompt or network call
			if share > 0 && studyKeyFile != "" {
				if studyKey, err = readStudyKey(studyKeyFile); err != nil {
					return err
				}
			}
			k, pid, c, err := a.signer(ctx, from, patient)
			if err != nil {
				return err
			}
			prog := a.newProgress()
			opts := client.TransferOptions{Sidecars: urls, Progress: prog.callback()}
			if share > 0 {
				if studyKey == nil {
					studyKey = k.EncPrivKey()
				}
				res, err := c.DownloadShare(ctx, k, client.ShareDownloadRequest{
					PatientID: pid, Share: share, StudyKey: studyKey, Output: output, Overwrite: force, ReuseAccess: reuseAccess,
				}, opts)
				prog.finish()
				if err != nil {
					return err
				}
				out := struct {
					PatientID  string  `json:"patient_id"`
					Share      uint64  `json:"share"`
					Record     uint64  `json:"record"`
					Study      string  `json:"study"`
					Anonymised bool    `json:"anonymised"`
					File       string  `json:"file"`
					Size       int64   `json:"size"`
					SHA256     string  `json:"ciphertext_sha256"`
					Sidecar    string  `json:"sidecar"`
					Access     *txView `json:"access_tx"`
				}{hexStr(pid), share, res.Share.RecordSequence, res.Share.StudyId, res.Share.Anonymised, res.Path, res.Size,
					hexStr(res.Share.SharedSha256), res.Sidecar, viewTx(res.Access)}
				return a.emit(out, func(w io.Writer) {
					fmt.Fprintf(w, "wrote %s: share %d (record %d) of patient %s for study %s, %d bytes, ciphertext verified\n",
						out.File, out.Share, out.Record, out.PatientID, out.Study, out.Size)
					fields(w, "anonymised", fmt.Sprint(out.Anonymised), "ciphertext sha256", out.SHA256, "sidecar", out.Sidecar)
					if out.Access != nil {
						fmt.Fprint(w, "read logged: ")
						out.Access.text(w)
					}
				})
			}
			if emergency {
				return a.emergencyDownload(ctx, c, k, pid, client.EmergencyDownloadRequest{
					PatientID: pid, Record: record, ReuseAccess: reuseAccess, Reason: reason, Output: output, Overwrite: force,
				}, viaAddr, opts, prog)
			}
			owner, err := a.ownsPatientID(ctx, c, k, pid)
			if err != nil {
				return err
			}
			var kekOf client.KEKFunc
			if owner {
				kekOf = existingKEK(a.kr, k)
			} else {
				kekOf = c.GranteeKEKFunc(ctx, k.EncPrivKey(), pid, k.Address())
			}
			res, err := c.Download(ctx, k, client.DownloadRequest{
				PatientID: pid, Record: record, Purpose: purpose, ReuseAccess: reuseAccess, KEK: kekOf, Output: output, Overwrite: force,
			}, opts)
			prog.finish()
			if err != nil {
				return err
			}
			out := struct {
				PatientID string  `json:"patient_id"`
				Record    uint64  `json:"record"`
				Category  string  `json:"category"`
				File      string  `json:"file"`
				Size      int64   `json:"size"`
				SHA256    string  `json:"ciphertext_sha256"`
				Sidecar   string  `json:"sidecar"`
				Access    *txView `json:"access_tx"`
			}{hexStr(pid), record, res.Record.Category, res.Path, res.Size, hexStr(res.Record.CiphertextSha256), res.Sidecar, viewTx(res.Access)}
			return a.emit(out, func(w io.Writer) {
				fmt.Fprintf(w, "wrote %s: record %d (%s) of patient %s, %d bytes, ciphertext verified\n",
					out.File, out.Record, out.Category, out.PatientID, out.Size)
				fields(w, "ciphertext sha256", out.SHA256, "sidecar", out.Sidecar)
				if out.Access != nil {
					fmt.Fprint(w, "read logged: ")
					out.Access.text(w)
				}
			})
		},
	}
	f := cmd.Flags()
	a.keyFlag(cmd, &from, "from", "reader key")
	f.StringVar(&patient, "patient", "", "patient id (hex) or enrolled key name (default: --from's own patient)")
	f.Uint64Var(&record, "record", 0, "record number to download")
	f.Uint64Var(&share, "share", 0, "share number to download (the study's researchers; the read is logged on chain first)")
	f.StringVarP(&output, "output", "o", "", "file to write (mode 0600)")
	f.StringVar(&purposeStr, "purpose", "treatment", "purpose of the logged read: treatment, research, or emergency (break-glass: see above)")
	a.keyFlag(cmd, &via, "via", "with --purpose emergency: the emergency service (address or key name; default: the one the patient opted in to)")
	reasonFlag(cmd, &reasonStr)
	f.BoolVar(&reuseAccess, "reuse-access", false, "do not log a new read: use your read of the record (or share) committed within the sidecar's window")
	f.BoolVar(&force, "force", false, "replace the output file if it exists (a file only: a directory is never replaced)")
	f.StringVar(&studyKeyFile, "study-key-file", "", "with --share: file holding the study's X25519 private key in hex (default: your encryption key)")
	sidecarFlag(cmd, &sidecars)
	_ = cmd.RegisterFlagCompletionFunc("purpose", cobra.FixedCompletions([]string{"treatment", "research", "emergency"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// emergencyDownload runs download --purpose emergency: a break-glass read
// of req's record by k through emergency service via (nil: the client
// finds the one the patient opted in to), and prints what it did.
func (a *cli) emergencyDownload(ctx context.Context, c *client.Client, k *keyring.Key, pid []byte, req client.EmergencyDownloadRequest,
	via []byte, opts client.TransferOptions, prog *progressLine) error {
	req.Service = via
	res, err := c.EmergencyDownload(ctx, k, req, opts)
	prog.finish()
	if err != nil {
		return err
	}
	out := struct {
		PatientID  string  `json:"patient_id"`
		Record     uint64  `json:"record"`
		Category   string  `json:"category"`
		Purpose    string  `json:"purpose"`
		Service    string  `json:"emergency_service"`
		Reason     string  `json:"emergency_reason,omitempty"`
		File       string  `json:"file"`
		Size       int64   `json:"size"`
		SHA256     string  `json:"ciphertext_sha256"`
		Sidecar    string  `json:"sidecar"`
		KeySidecar string  `json:"key_sidecar"`
		Access     *txView `json:"access_tx"`
	}{PatientID: hexStr(pid), Record: req.Record, Category: res.Record.Category, Purpose: purposeName(emrv1.Purpose_PURPOSE_EMERGENCY),
		Service: upperHex(res.Service), File: res.Path, Size: res.Size, SHA256: hexStr(res.Record.CiphertextSha256),
		Sidecar: res.Sidecar, KeySidecar: res.KeySidecar, Access: viewTx(res.Access)}
	if res.Access != nil {
		out.Reason = app.EmergencyReasonName(req.Reason)
	}
	return a.emit(out, func(w io.Writer) {
		fmt.Fprintf(w, "wrote %s: record %d (%s) of patient %s, %d bytes, ciphertext verified (emergency read)\n",
			out.File, out.Record, out.Category, out.PatientID, out.Size)
		fields(w, "emergency service", a.labeler()(out.Service), "ciphertext sha256", out.SHA256, "sidecar", out.Sidecar, "data key from", out.KeySidecar)
		if out.Access != nil {
			fmt.Fprintf(w, "break-glass read logged, reason %s (the patient and your organization's auditors see it): ", out.Reason)
			out.Access.text(w)
		}
	})
}

// readStudyKey reads the study's X25519 private key, 64 hex characters.
func readStudyKey(path string) (*ecdh.PrivateKey, error) {
	b, err := readHexKeyFile("--study-key-file", path, crypto.X25519KeySize, "the study's X25519 private key")
	if err != nil {
		return nil, err
	}
	defer clear(b)
	return crypto.ParseEncryptionPrivateKey(b)
}

func newShareCmd(a *cli) *cobra.Command {
	var from, patient, study, tempDir string
	var record uint64
	var reuseAccess bool
	var sidecars []string
	cmd := &cobra.Command{
		Use:   "share --from CLINICIAN --patient ID --record N --study S",
		Short: "Share a record with a research study: decrypt, anonymise if required, re-encrypt to the study key",
		Long: `share is for a clinician holding the patient's share consent for study S:
  1. logs a research read of the record (RecordAccess, purpose research,
     which the chain allows only with the share right) and downloads,
     verifies and decrypts it as "emrcli download" does (the plaintext never
     touches the disk);
  2. when the consent says anonymise, de-identifies it by the HIPAA Safe Harbor
     method: FHIR R4 JSON resources (a resource or a Bundle) only — names,
     addresses below the state, dates below the year, telecom, identifiers,
     free text, photos and the rest are removed or generalized. Any other
     content (PDF, DICOM, FHIR XML, ...) is refused with a clear error, and
     nothing is uploaded or shared (the research read of step 1 stays in
     the patient's audit log: the record was read);
  3. encrypts the result under a fresh data key, seals that key to the study's
     registered X25519 key (bound to patient, study and record), uploads the
     ciphertext and records ShareRecord on chain.
The study's researchers then fetch it with "emrcli download --share N".`,
		Example: `  emrcli share --from dr-who --patient 5be1...9f --record 3 --study covid-19
  emrcli share --from dr-who --patient alice --record 3 --study covid-19 --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if record == 0 || study == "" {
				return usagef("--record and --study are required")
			}
			urls, err := a.sidecarURLs(sidecars)
			if err != nil {
				return err
			}
			k, pid, c, err := a.signer(ctx, from, patient)
			if err != nil {
				return err
			}
			prog := a.newProgress()
			res, err := c.ShareRecord(ctx, k, client.ShareRequest{
				PatientID: pid, Record: record, StudyID: study, ReuseAccess: reuseAccess,
			}, client.TransferOptions{Sidecars: urls, TempDir: tempDir, Progress: prog.callback()})
			prog.finish()
			if err != nil {
				return err
			}
			type deidView struct {
				Removed          int `json:"removed"`
				Generalized      int `json:"generalized"`
				DroppedResources int `json:"dropped_resources"`
			}
			out := struct {
				PatientID  string    `json:"patient_id"`
				Record     uint64    `json:"record"`
				Study      string    `json:"study"`
				Share      uint64    `json:"share,omitempty"`
				Anonymised bool      `json:"anonymised"`
				Deid       *deidView `json:"deidentification,omitempty"`
				Size       int64     `json:"size"`
				SHA256     string    `json:"ciphertext_sha256"`
				Sidecar    string    `json:"sidecar"`
				Access     *txView   `json:"access_tx"`
				Tx         *txView   `json:"tx"`
			}{PatientID: hexStr(pid), Record: record, Study: study, Anonymised: res.Anonymised, Size: res.Size,
				SHA256: hex.EncodeToString(res.SHA256[:]), Sidecar: res.Sidecar, Access: viewTx(res.Access), Tx: viewTx(res.Tx)}
			if res.Share != nil {
				out.Share = res.Share.Sequence
			}
			if r := res.Report; r != nil {
				out.Deid = &deidView{len(r.Removed), len(r.Generalized), len(r.DroppedResources)}
			}
			return a.emit(out, func(w io.Writer) {
				what := "not anonymised (the consent does not require it)"
				if d := out.Deid; d != nil {
					what = fmt.Sprintf("anonymised (Safe Harbor): %d elements removed, %d generalized, %d resources dropped", d.Removed, d.Generalized, d.DroppedResources)
				}
				if out.Share > 0 {
					fmt.Fprintf(w, "shared record %d of patient %s with study %s as share %d\n", out.Record, out.PatientID, out.Study, out.Share)
				} else {
					fmt.Fprintf(w, "shared record %d of patient %s with study %s\n", out.Record, out.PatientID, out.Study)
				}
				fields(w, "content", what, "size", fmt.Sprint(out.Size, " bytes encrypted to the study key"), "ciphertext sha256", out.SHA256, "sidecar", out.Sidecar)
				out.Tx.text(w)
			})
		},
	}
	f := cmd.Flags()
	a.keyFlag(cmd, &from, "from", "sharing clinician's key")
	f.StringVar(&patient, "patient", "", "patient id (hex) or enrolled key name")
	f.Uint64Var(&record, "record", 0, "record number to share")
	f.StringVar(&study, "study", "", "study id")
	f.BoolVar(&reuseAccess, "reuse-access", false, "do not log a new research read: use yours committed within the sidecar's window")
	f.StringVar(&tempDir, "temp-dir", "", "directory of the ciphertext scratch files (default: the system's)")
	sidecarFlag(cmd, &sidecars)
	return cmd
}
