package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// emit prints v as JSON (--json) or through text. Unverified (--no-verify),
// the text starts with a banner and a JSON object says "verified": false.
func (a *cli) emit(v any, text func(w io.Writer)) error {
	if a.jsonOut {
		if a.noVerify {
			v = markUnverified(v)
		}
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	a.unverifiedBanner()
	text(a.stdout)
	return nil
}

// unverifiedBanner starts unverified (--no-verify) text output with a
// banner that says so.
func (a *cli) unverifiedBanner() {
	if a.noVerify {
		fmt.Fprintln(a.stdout, "NOT VERIFIED (--no-verify): the node's answers below were not checked")
	}
}

// markUnverified adds "verified": false to v when it encodes as a JSON
// object that does not say whether it was verified (the standard output of
// a script must say so, not only a warning on standard error).
func markUnverified(v any) any {
	raw, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil || obj == nil {
		return v
	}
	if _, ok := obj["verified"]; !ok {
		obj["verified"] = json.RawMessage("false")
	}
	return obj
}

func hexStr(b []byte) string { return hex.EncodeToString(b) }

func upperHex(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }

func ts(t *timestamppb.Timestamp) string {
	if t == nil {
		return ""
	}
	return rfc3339(t.AsTime())
}

// rfc3339 is t in UTC, to the second, as emrcli shows times.
func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func enumName(s, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(s, prefix))
}

// roleName names a role as --role takes it: "clinician",
// "emergency-service".
func roleName(r emrv1.Role) string { return app.KebabName(r.String(), "ROLE_") }

func statusName(s emrv1.MemberStatus) string { return enumName(s.String(), "MEMBER_STATUS_") }

func rightName(r emrv1.Right) string { return enumName(r.String(), "RIGHT_") }

// rightsNames names rights in order ([] for none, not null in JSON).
func rightsNames(rights []emrv1.Right) []string {
	names := make([]string, 0, len(rights))
	for _, r := range rights {
		names = append(names, rightName(r))
	}
	return names
}

func purposeName(p emrv1.Purpose) string { return enumName(p.String(), "PURPOSE_") }

// table writes aligned columns.
func table(w io.Writer, header []string, rows [][]string) {
	c := newColumns(w, len(header))
	c.print(append([][]string{header}, rows...)...)
}

// columns prints rows of cells in columns two spaces apart, batch by
// batch (audit --follow prints its rows as they come): a column is as wide
// as its widest cell in the batches printed so far, so a later row lines
// up with the earlier ones unless one of its cells is wider. Each cell is
// printed on one line, escaped (app.OneLine).
type columns struct {
	w      io.Writer
	widths []int
}

func newColumns(w io.Writer, n int) *columns { return &columns{w: w, widths: make([]int, n)} }

// fit makes the columns at least widths wide: for rows that will come
// after the first batch, wider than it.
func (c *columns) fit(widths ...int) {
	for i, w := range widths[:min(len(widths), len(c.widths))] {
		c.widths[i] = max(c.widths[i], w)
	}
}

// print prints a batch of rows.
func (c *columns) print(rows ...[]string) {
	lines := make([][]string, len(rows))
	for i, r := range rows {
		lines[i] = make([]string, len(r))
		for j, cell := range r {
			lines[i][j] = app.OneLine(cell)
			if j < len(c.widths) {
				c.widths[j] = max(c.widths[j], utf8.RuneCountInString(lines[i][j]))
			}
		}
	}
	for _, cells := range lines {
		var b strings.Builder
		for j, cell := range cells {
			b.WriteString(cell)
			if j == len(cells)-1 {
				break
			}
			pad := 2
			if j < len(c.widths) {
				pad += c.widths[j] - utf8.RuneCountInString(cell)
			}
			b.WriteString(strings.Repeat(" ", pad))
		}
		fmt.Fprintln(c.w, b.String())
	}
}

// fields writes "key: value" lines, aligned. Values are other people's
// text (titles, credentials, object keys) as the chain stores it: each is
// printed on one line with terminal escapes and other unprintable
// characters escaped, so none can rewrite what the screen shows.
func fields(w io.Writer, kv ...string) {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			continue
		}
		fmt.Fprintf(tw, "%s:\t%s\n", kv[i], app.OneLine(kv[i+1]))
	}
	tw.Flush()
}

// --- views: what --json prints ------------------------------------------

type txView struct {
	Hash      string `json:"hash"`
	Height    int64  `json:"height"`
	Code      uint32 `json:"code"`
	Codespace string `json:"codespace,omitempty"`
	Log       string `json:"log,omitempty"`
	Committed bool   `json:"committed"`
	Verified  bool   `json:"verified"`
}

func viewTx(r *client.TxResult) *txView {
	if r == nil {
		return nil
	}
	return &txView{Hash: upperHex(r.Hash), Height: r.Height, Code: r.Code, Codespace: r.Codespace, Log: r.Log, Committed: r.Height > 0, Verified: r.Verified}
}

func (t *txView) text(w io.Writer) {
	if !t.Committed {
		fmt.Fprintf(w, "tx %s broadcast (not waited for; see: emrcli tx status %s)\n", t.Hash, t.Hash)
		return
	}
	v := "verified"
	if !t.Verified {
		v = "NOT verified"
	}
	fmt.Fprintf(w, "tx %s committed: height %d, code %d (%s)\n", t.Hash, t.Height, t.Code, v)
}

type memberView struct {
	Address          string `json:"address"`
	Role             string `json:"role"`
	Organization     string `json:"organization,omitempty"`
	CredentialRef    string `json:"credential_ref,omitempty"`
	Status           string `json:"status"`
	SignPubKey       string `json:"sign_pub_key"`
	EncPubKey        string `json:"enc_pub_key"`
	RegisteredBy     string `json:"registered_by,omitempty"`
	RegisteredHeight int64  `json:"registered_height"`
}

func viewMember(m *emrv1.Member) memberView {
	return memberView{
		Address: upperHex(m.Address), Role: roleName(m.Role), Organization: m.OrganizationId, CredentialRef: m.CredentialRef,
		Status: statusName(m.Status), SignPubKey: hexStr(m.SignPubKey), EncPubKey: hexStr(m.EncPubKey),
		RegisteredBy: upperHex(m.RegisteredBy), RegisteredHeight: m.RegisteredHeight,
	}
}

func (m memberView) text(w io.Writer) {
	fields(w, "address", m.Address, "role", m.Role, "organization", m.Organization, "credential", m.CredentialRef,
		"status", m.Status, "signing key", m.SignPubKey, "encryption key", m.EncPubKey,
		"registered by", m.RegisteredBy, "registered at", fmt.Sprint("height ", m.RegisteredHeight))
}

type patientView struct {
	ID             string `json:"id"`
	Owner          string `json:"owner"`
	KeyVersion     uint64 `json:"key_version"`
	RecordCount    uint64 `json:"record_count"`
	AccessCount    uint64 `json:"access_count"`
	ShareCount     uint64 `json:"share_count"`
	EnrolledHeight int64  `json:"enrolled_height"`
	// RotationPending says why no record is added now: a revocation's key
	// rotations are unfinished (app.KeyRotationPending); "" otherwise.
	RotationPending string `json:"rotation_pending,omitempty"`
}

func viewPatient(p *emrv1.Patient) patientView {
	v := patientView{ID: hexStr(p.Id), Owner: upperHex(p.Owner), KeyVersion: p.KeyVersion, RecordCount: p.RecordCount,
		AccessCount: p.AccessCount, ShareCount: p.ShareCount, EnrolledHeight: p.EnrolledHeight}
	if p.KeyVersion < p.MinKeyVersion {
		v.RotationPending = fmt.Sprintf("no record is added below key version %d: run emrcli revoke again to finish the key rotations", p.MinKeyVersion)
	}
	return v
}

func (p patientView) text(w io.Writer) {
	fields(w, "patient id", p.ID, "owner", p.Owner, "key version", fmt.Sprint(p.KeyVersion), "records", fmt.Sprint(p.RecordCount),
		"reads logged", fmt.Sprint(p.AccessCount), "shares", fmt.Sprint(p.ShareCount), "enrolled at", fmt.Sprint("height ", p.EnrolledHeight),
		"rotation pending", p.RotationPending)
}

type permissionView struct {
	PatientID     string   `json:"patient_id"`
	Grantee       string   `json:"grantee"`
	Rights        []string `json:"rights"`
	Categories    []string `json:"categories"`
	NotBefore     string   `json:"not_before,omitempty"`
	NotAfter      string   `json:"not_after"`
	KeyVersion    uint64   `json:"key_version"`
	StudyID       string   `json:"study_id,omitempty"`
	Anonymise     bool     `json:"anonymise,omitempty"`
	GrantedHeight int64    `json:"granted_height"`
	RevokedHeight int64    `json:"revoked_height,omitempty"`
	RevokedTime   string   `json:"revoked_time,omitempty"`
	State         string   `json:"state"`
	// GranteeStatus is the grantee's standing in the same state ("active",
	// "suspended", "retired"): a consent whose grantee is not active lets
	// it do nothing, whatever its window (markStanding).
	GranteeStatus string `json:"grantee_status"`
	// StudyClosed says why the study a share consent names is closed
	// (its organization left the consortium), when it is: the consent
	// then allows no research read or share (markStanding).
	StudyClosed string `json:"study_closed,omitempty"`
	// HoldsCurrentKey: the consent has ended (expired, not revoked) but its
	// grantee was handed the patient's current key version, under which new
	// records are still encrypted (markKeyHolders). A revocation rotates
	// the key past it.
	HoldsCurrentKey bool `json:"holds_current_key,omitempty"`
}

// The states of a consent in force, or to be, or ended by its window
// (viewPermission).
const (
	stateActive      = "active"
	stateNotYetValid = "not yet valid"
	stateExpired     = "expired"
)

// viewPermission describes p as of block time now.
func viewPermission(p *emrv1.Permission, now time.Time) permissionView {
	v := permissionView{
		PatientID: hexStr(p.PatientId), Grantee: upperHex(p.Grantee), Rights: rightsNames(p.Rights), Categories: p.Categories,
		NotBefore: ts(p.NotBefore), NotAfter: ts(p.NotAfter), KeyVersion: p.KeyVersion, StudyID: p.StudyId,
		Anonymise: p.Anonymise, GrantedHeight: p.GrantedHeight, RevokedHeight: p.RevokedHeight, RevokedTime: ts(p.RevokedTime),
	}
	if v.Categories == nil {
		v.Categories = []string{}
	}
	switch {
	case p.RevokedHeight != 0:
		v.State = fmt.Sprintf("revoked at height %d", p.RevokedHeight)
	case !now.Before(p.GetNotAfter().AsTime()):
		v.State = stateExpired
	case p.NotBefore != nil && now.Before(p.NotBefore.AsTime()):
		v.State = stateNotYetValid
	default:
		v.State = stateActive
	}
	return v
}

func permissionRows(ps []permissionView, who func(p permissionView) string) [][]string {
	var rows [][]string
	for _, p := range ps {
		cats := strings.Join(p.Categories, ",")
		if cats == "" {
			cats = "(all)"
		}
		window := p.NotBefore + " .. " + p.NotAfter
		if p.StudyID != "" {
			cats += " study=" + p.StudyID
			if p.Anonymise {
				cats += " (anonymised)"
			}
		}
		rows = append(rows, []string{who(p), strings.Join(p.Rights, ","), cats, window, fmt.Sprint(p.KeyVersion), p.State})
	}
	return rows
}

type recordView struct {
	PatientID        string `json:"patient_id"`
	Sequence         uint64 `json:"sequence"`
	Category         string `json:"category"`
	Uploader         string `json:"uploader"`
	ObjectKey        string `json:"object_key"`
	CiphertextSHA256 string `json:"ciphertext_sha256"`
	Size             uint64 `json:"size"`
	KeyVersion       uint64 `json:"key_version"`
	Height           int64  `json:"height"`
	Time             string `json:"time"`
	TxHash           string `json:"tx_hash"`
	// BodySHA256 and UploaderSignature are the uploader's provenance: the
	// signature over the record's patient, category, ciphertext hash and
	// this hash of its transaction body (app.RecordSignBytesOf).
	BodySHA256        string `json:"body_sha256"`
	UploaderSignature string `json:"uploader_signature"`
	// SameCiphertextAs is the first record of the listing that names the
	// same ciphertext (an alias: the chain does not refuse one within a
	// patient and category, and a read of either serves the same file, but
	// the audit log names the record read). Set by markAliases.
	SameCiphertextAs uint64 `json:"same_ciphertext_as,omitempty"`
}

// markAliases sets SameCiphertextAs of every record that names the
// ciphertext of an earlier one of views (records oldest first).
func markAliases(views []recordView) {
	first := make(map[string]uint64, len(views))
	for i := range views {
		v := &views[i]
		key := v.Category + "/" + v.CiphertextSHA256
		if seq, ok := first[key]; ok {
			v.SameCiphertextAs = seq
		} else {
			first[key] = v.Sequence
		}
	}
}

func viewRecord(r *emrv1.Record) recordView {
	return recordView{
		PatientID: hexStr(r.PatientId), Sequence: r.Sequence, Category: r.Category, Uploader: upperHex(r.Uploader),
		ObjectKey: r.ObjectKey, CiphertextSHA256: hexStr(r.CiphertextSha256), Size: r.Size, KeyVersion: r.KeyVersion,
		Height: r.Height, Time: ts(r.Time), TxHash: upperHex(r.TxHash),
		BodySHA256: hexStr(r.BodySha256), UploaderSignature: hexStr(r.UploaderSignature),
	}
}

func (r recordView) text(w io.Writer) {
	fields(w, "patient", r.PatientID, "record", fmt.Sprint(r.Sequence), "category", r.Category, "uploader", r.Uploader,
		"object key", r.ObjectKey, "ciphertext sha256", r.CiphertextSHA256, "size", fmt.Sprint(r.Size, " bytes"),
		"key version", fmt.Sprint(r.KeyVersion), "added", fmt.Sprintf("%s (height %d, tx %s)", r.Time, r.Height, r.TxHash),
		"body sha256", r.BodySHA256, "uploader sig", r.UploaderSignature)
}

func recordRows(rs []recordView) [][]string {
	var rows [][]string
	for _, r := range rs {
		sum := r.CiphertextSHA256
		if len(sum) >= 16 { // a short hash (an unverified node's) is shown whole, not sliced out of range
			sum = sum[:16] + "…"
		}
		rows = append(rows, []string{fmt.Sprint(r.Sequence), r.Category, fmt.Sprint(r.Size), r.Uploader, r.Time, sum})
	}
	return rows
}

type studyView struct {
	ID                    string `json:"id"`
	Title                 string `json:"title"`
	PrincipalInvestigator string `json:"principal_investigator"`
	Organization          string `json:"organization"`
	StudyPubKey           string `json:"study_pub_key"`
	RegisteredBy          string `json:"registered_by"`
	RegisteredHeight      int64  `json:"registered_height"`
	Shares                uint64 `json:"share_count"`
	// Closed says why the study takes no research read or share (its
	// organization left the consortium); "" while it is open.
	Closed string `json:"closed,omitempty"`
}

func viewStudy(s *emrv1.Study) studyView {
	return studyView{ID: s.Id, Title: s.Title, PrincipalInvestigator: upperHex(s.PrincipalInvestigator), Organization: s.OrganizationId,
		StudyPubKey: hexStr(s.StudyPubKey), RegisteredBy: upperHex(s.RegisteredBy), RegisteredHeight: s.RegisteredHeight,
		Shares: s.ShareCount}
}

func (s studyView) text(w io.Writer) {
	closed := "" // fields leaves the line out while the study is open
	if s.Closed != "" {
		closed = s.Closed + ": no research read or share is accepted"
	}
	fields(w, "study", s.ID, "title", s.Title, "principal investigator", s.PrincipalInvestigator, "organization", s.Organization,
		"study key", s.StudyPubKey, "registered by", s.RegisteredBy, "registered at", fmt.Sprint("height ", s.RegisteredHeight),
		"records shared", fmt.Sprint(s.Shares), "closed", closed)
}

// provenance is printed with query results.
type provenance struct {
	Height   int64  `json:"height"`
	Verified bool   `json:"verified"`
	Header   string `json:"verified_header_time,omitempty"`
}

func viewInfo(i *client.QueryInfo) provenance {
	p := provenance{Height: i.Height, Verified: i.Verified}
	if i.Verified {
		p.Header = rfc3339(i.Time)
	}
	return p
}

func (p provenance) text(w io.Writer) {
	if p.Verified {
		fmt.Fprintf(w, "(state at height %d, verified against the light-client-verified header %d)\n", p.Height, p.Height+1)
	} else {
		fmt.Fprintf(w, "(state at height %d, NOT verified)\n", p.Height)
	}
}

type shareView struct {
	PatientID    string `json:"patient_id"`
	Sequence     uint64 `json:"sequence"`
	Record       uint64 `json:"record"`
	StudyID      string `json:"study_id"`
	StudyNumber  uint64 `json:"study_sequence"`
	Anonymised   bool   `json:"anonymised"`
	Sharer       string `json:"sharer"`
	SharedSHA256 string `json:"shared_sha256"`
	Size         uint64 `json:"size"`
	Height       int64  `json:"height"`
	Time         string `json:"time"`
}

func viewShare(s *emrv1.Share) shareView {
	return shareView{
		PatientID: hexStr(s.PatientId), Sequence: s.Sequence, Record: s.RecordSequence, StudyID: s.StudyId, StudyNumber: s.StudySequence, Anonymised: s.Anonymised,
		Sharer: upperHex(s.Sharer), SharedSHA256: hexStr(s.SharedSha256), Size: s.Size, Height: s.Height, Time: ts(s.Time),
	}
}
