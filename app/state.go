package app

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/emrchain/emrchain/store"
)

// state is typed access to the tree. Read errors are storage faults and are
// returned wrapped in ErrInternal's sense (CodeOf maps them to code 1);
// absence is (nil, nil).
type state struct {
	kv store.KV
}

func (s state) get(key []byte, m proto.Message) (bool, error) {
	bz, err := s.kv.Get(key)
	if err != nil {
		return false, fmt.Errorf("read %x: %w", key, err)
	}
	if bz == nil {
		return false, nil
	}
	if err := proto.Unmarshal(bz, m); err != nil {
		return false, fmt.Errorf("decode %T at %x: %w", m, key, err)
	}
	return true, nil
}

func (s state) put(key []byte, m proto.Message) error {
	if err := s.kv.Set(key, marshal(m)); err != nil {
		return fmt.Errorf("write %x: %w", key, err)
	}
	return nil
}

// keysAfter lists, in key order, what follows prefix in the keys under it
// (an index's addresses, say).
func (s state) keysAfter(prefix []byte) ([][]byte, error) {
	var out [][]byte
	err := scan(s.kv, prefix, prefixEnd(prefix), true, func(key, _ []byte) (bool, error) {
		out = append(out, bytes.Clone(key[len(prefix):]))
		return true, nil
	})
	return out, err
}

func (s state) mark(key []byte) error {
	if err := s.kv.Set(key, []byte{indexMarker}); err != nil {
		return fmt.Errorf("write %x: %w", key, err)
	}
	return nil
}

func getTyped[T any, PT interface {
	*T
	proto.Message
}](s state, key []byte) (*T, error) {
	var v T
	found, err := s.get(key, PT(&v))
	if err != nil || !found {
		return nil, err
	}
	return &v, nil
}

func (s state) params() (*emrv1.Params, error) {
	p, err := getTyped[emrv1.Params](s, keyParams)
	if err == nil && p == nil {
		err = fmt.Errorf("params missing from state")
	}
	return p, err
}

func (s state) chainID() (string, error) {
	bz, err := s.kv.Get(keyChainID)
	return string(bz), err
}

func (s state) organization(id string) (*emrv1.Organization, error) {
	return getTyped[emrv1.Organization](s, organizationKey(id))
}

func (s state) member(addr []byte) (*emrv1.Member, error) {
	return getTyped[emrv1.Member](s, memberKey(addr))
}

func (s state) putMember(m *emrv1.Member) error {
	if err := s.put(memberKey(m.Address), m); err != nil {
		return err
	}
	if m.OrganizationId == "" {
		return nil
	}
	if m.Role == emrv1.Role_ROLE_REGISTRAR {
		// The registrars alone, active ones first, for counting the
		// organizations that can approve proposals without reading every
		// clinician, or every suspended registrar.
		was := registrarKey(m.OrganizationId, !IsActive(m), m.Address)
		if err := s.kv.Delete(was); err != nil {
			return fmt.Errorf("delete %x: %w", was, err)
		}
		if err := s.mark(registrarKey(m.OrganizationId, IsActive(m), m.Address)); err != nil {
			return err
		}
	}
	return s.kv.Set(orgMemberKey(m.OrganizationId, m.Address), []byte{byte(m.Role)})
}

func (s state) nextSequence(addr []byte) (uint64, error) {
	acct, err := getTyped[emrv1.Account](s, accountKey(addr))
	if err != nil || acct == nil {
		return 0, err
	}
	return acct.NextSequence, nil
}

func (s state) setNextSequence(addr []byte, next uint64) error {
	return s.put(accountKey(addr), &emrv1.Account{Address: addr, NextSequence: next})
}

func (s state) patient(id []byte) (*emrv1.Patient, error) {
	return getTyped[emrv1.Patient](s, patientKey(id))
}

func (s state) permission(patient, grantee []byte) (*emrv1.Permission, error) {
	return getTyped[emrv1.Permission](s, permissionKey(patient, grantee))
}

func (s state) record(patient []byte, seq uint64) (*emrv1.Record, error) {
	return getTyped[emrv1.Record](s, recordKey(patient, seq))
}

func (s state) study(id string) (*emrv1.Study, error) {
	return getTyped[emrv1.Study](s, studyKey(id))
}

func (s state) share(patient []byte, seq uint64) (*emrv1.Share, error) {
	return getTyped[emrv1.Share](s, shareKey(patient, seq))
}

// An index entry that names an entry of a patient's (a study's share, a
// break-glass log's access event) holds a patient ref: the patient id,
// then the 8-byte sequence of the entry under that patient.
const patientRefSize = PatientIDSize + 8

func patientRef(patient []byte, seq uint64) []byte { return join(patient, u64(seq)) }

// splitPatientRef splits ref, the value of index key key (of the index
// what names), into its patient id and sequence.
func splitPatientRef(what string, key, ref []byte) (patient []byte, seq uint64, err error) {
	if len(ref) != patientRefSize {
		return nil, 0, fmt.Errorf("%w: %s %x is %d bytes, want %d", ErrInternal, what, key, len(ref), patientRefSize)
	}
	return ref[:PatientIDSize], binary.BigEndian.Uint64(ref[PatientIDSize:]), nil
}

// putStudyShare files share under study as its share_count-th share, and
// stores the study with that count.
func (s state) putStudyShare(study *emrv1.Study, share *emrv1.Share) error {
	key := studyShareKey(study.Id, study.ShareCount)
	if err := s.kv.Set(key, patientRef(share.PatientId, share.Sequence)); err != nil {
		return fmt.Errorf("write %x: %w", key, err)
	}
	return s.put(studyKey(study.Id), study)
}

// studyShareAt reads the share that ref, the value of the study index key,
// names.
func (s state) studyShareAt(key, ref []byte) (*emrv1.Share, error) {
	patient, seq, err := splitPatientRef("study share entry", key, ref)
	if err != nil {
		return nil, err
	}
	sh, err := s.share(patient, seq)
	if err != nil {
		return nil, err
	}
	if sh == nil {
		return nil, fmt.Errorf("%w: study share entry %x names share %x/%d, which is not there", ErrInternal, key, patient, seq)
	}
	return sh, nil
}

// breakGlassLen is how many entries the break-glass log of emergency
// service service has (0: none yet).
func (s state) breakGlassLen(service []byte) (uint64, error) {
	return s.counter(breakGlassLenKey(service), 0)
}

// appendBreakGlass files ev, an emergency read through ev's emergency
// service, as the next entry of that service's break-glass log.
func (s state) appendBreakGlass(ev *emrv1.AccessEvent) error {
	n, err := s.breakGlassLen(ev.EmergencyService)
	if err != nil {
		return err
	}
	n++
	key := breakGlassKey(ev.EmergencyService, n)
	if err := s.kv.Set(key, patientRef(ev.PatientId, ev.Sequence)); err != nil {
		return fmt.Errorf("write %x: %w", key, err)
	}
	return s.kv.Set(breakGlassLenKey(ev.EmergencyService), u64(n))
}

// breakGlassAt reads the access event that ref, the value of break-glass
// log key key of service, names, and checks that it is an emergency read
// through service.
func (s state) breakGlassAt(service, key, ref []byte) (*emrv1.AccessEvent, error) {
	patient, seq, err := splitPatientRef("break-glass log entry", key, ref)
	if err != nil {
		return nil, err
	}
	ev, err := getTyped[emrv1.AccessEvent](s, accessKey(patient, seq))
	if err != nil {
		return nil, err
	}
	if ev == nil || ev.Purpose != emrv1.Purpose_PURPOSE_EMERGENCY || !bytes.Equal(ev.EmergencyService, service) {
		return nil, fmt.Errorf("%w: break-glass log entry %x names access event %x/%d, which is not there or no emergency read through %X", ErrInternal, key, patient, seq, service)
	}
	return ev, nil
}

// votingOrganizations are the organizations that can approve a proposal:
// those with an active registrar (from the registrar index, 0x17, where an
// organization's active registrars sort first). The walk reads one index
// key of each organization, and the member of the first if active (a
// retired one: its organization retired, with every member), so a
// registrar who registers many more, or suspends them, makes no proposal
// check (nor the proofs of a verified Proposal read) longer.
func (s state) votingOrganizations() (map[string]bool, error) {
	voting := map[string]bool{}
	prefix := []byte{prefixRegistrar}
	from, end := prefix, prefixEnd(prefix)
	for from != nil {
		start := from
		from = nil
		err := scan(s.kv, start, end, true, func(key, _ []byte) (bool, error) {
			org, active, addr, err := parseRegistrarKey(key)
			if err != nil {
				return false, err
			}
			if active {
				m, err := s.member(addr)
				if err != nil {
					return false, err
				}
				switch {
				case m.GetStatus() == emrv1.MemberStatus_MEMBER_STATUS_RETIRED:
					// Its organization left the consortium: retirement
					// retires every member together and leaves the
					// indexes as they were.
				case !IsActive(m) || m.Role != emrv1.Role_ROLE_REGISTRAR || m.OrganizationId != org:
					return false, fmt.Errorf("%w: registrar index %x names %v, no active registrar of %q", ErrInternal, key, m, org)
				default:
					voting[org] = true
				}
			}
			from = prefixEnd(registrarPrefix(org)) // the next organization's registrars
			return false, nil
		})
		if err != nil {
			return nil, err
		}
	}
	return voting, nil
}

// validators is the validator set, ordered by key.
func (s state) validators() ([]*emrv1.Validator, error) {
	var out []*emrv1.Validator
	err := s.each([]byte{prefixValidator}, func(key, value []byte) error {
		v := &emrv1.Validator{}
		if err := proto.Unmarshal(value, v); err != nil {
			return fmt.Errorf("decode validator at %x: %w", key, err)
		}
		out = append(out, v)
		return nil
	})
	return out, err
}

// validator is the validator of pubKey (nil: none).
func (s state) validator(pubKey []byte) (*emrv1.Validator, error) {
	return getTyped[emrv1.Validator](s, validatorKey(pubKey))
}

// setValidator stores v, or deletes its key for power 0.
func (s state) setValidator(v *emrv1.Validator) error {
	if v.Power == 0 {
		if err := s.kv.Delete(validatorKey(v.PubKey)); err != nil {
			return fmt.Errorf("delete validator %x: %w", v.PubKey, err)
		}
		return nil
	}
	return s.put(validatorKey(v.PubKey), v)
}

// unseen is the power of each validator that has been added or raised and
// has not signed a block under the change since (markSigned), by key.
func (s state) unseen() (map[string]int64, error) {
	out := map[string]int64{}
	err := s.each([]byte{prefixUnseen}, func(key, value []byte) error {
		power, err := decodeU64(value)
		if err != nil {
			return fmt.Errorf("%w: unseen power at %x: %v", ErrInternal, key, err)
		}
		out[string(key[1:])] = int64(power)
		return nil
	})
	return out, err
}

// unseenPower is the unseen power of one key (0: none), read from its own
// entry: a reader of one key proves one key, not every validator's.
func (s state) unseenPower(pubKey []byte) (int64, error) {
	n, err := s.counter(unseenKey(pubKey), 0)
	return int64(n), err
}

// setUnseen records power of pubKey as not yet seen signing (0: none).
func (s state) setUnseen(pubKey []byte, power int64) error {
	if power == 0 {
		return s.kv.Delete(unseenKey(pubKey))
	}
	return s.kv.Set(unseenKey(pubKey), u64(uint64(power)))
}

// keyChanges is how many executed proposals have changed pubKey's power;
// kept after a removal, so that a key added again is not the same.
func (s state) keyChanges(pubKey []byte) (uint64, error) {
	return s.counter(keyChangesKey(pubKey), 0)
}

func (s state) setKeyChanges(pubKey []byte, n uint64) error {
	return s.kv.Set(keyChangesKey(pubKey), u64(n))
}

func (s state) proposal(id uint64) (*emrv1.Proposal, error) {
	return getTyped[emrv1.Proposal](s, proposalKey(id))
}

func (s state) nextProposalID() (uint64, error) { return s.counter(keyNextProposal, 1) }

// paramsChanges is how many executed proposals have changed the params.
func (s state) paramsChanges() (uint64, error) { return s.counter(keyParamsChanges, 0) }

func (s state) setParamsChanges(n uint64) error { return s.kv.Set(keyParamsChanges, u64(n)) }

// counter reads the 8-byte big-endian number at key, absent when none is
// stored.
func (s state) counter(key []byte, absent uint64) (uint64, error) {
	bz, err := s.kv.Get(key)
	if err != nil || bz == nil {
		return absent, err
	}
	n, err := decodeU64(bz)
	if err != nil {
		return 0, fmt.Errorf("%w: at %x: %v", ErrInternal, key, err)
	}
	return n, nil
}

func (s state) setNextProposalID(id uint64) error { return s.kv.Set(keyNextProposal, u64(id)) }

// each visits every key under prefix, in order.
func (s state) each(prefix []byte, visit func(key, value []byte) error) error {
	return scan(s.kv, prefix, prefixEnd(prefix), true, func(key, value []byte) (bool, error) {
		return true, visit(key, value)
	})
}

// scan visits the keys of r in [start, end) in the order asked until visit
// says no more or fails.
func scan(r store.Reader, start, end []byte, ascending bool, visit func(key, value []byte) (more bool, err error)) error {
	it, err := r.Iterator(start, end, ascending)
	if err != nil {
		return err
	}
	defer it.Close()
	for ; it.Valid(); it.Next() {
		more, err := visit(it.Key(), it.Value())
		if err != nil || !more {
			return err
		}
	}
	return it.Error()
}

// lastBlock is the height and time of the last block that changed this
// view (blocks that change nothing leave the tree alone, see FinalizeBlock).
func (s state) lastBlock() (int64, time.Time, error) {
	bz, err := s.kv.Get(keyLastBlock)
	if err != nil || bz == nil {
		return 0, time.Time{}, err
	}
	if len(bz) != 20 {
		return 0, time.Time{}, fmt.Errorf("last block record is %d bytes, want 20", len(bz))
	}
	height := int64(binary.BigEndian.Uint64(bz[0:8]))
	t := time.Unix(int64(binary.BigEndian.Uint64(bz[8:16])), int64(binary.BigEndian.Uint32(bz[16:20]))).UTC()
	return height, t, nil
}

func (s state) setLastBlock(b BlockInfo) error {
	out := binary.BigEndian.AppendUint64(nil, uint64(b.Height))
	out = binary.BigEndian.AppendUint64(out, uint64(b.Time.Unix()))
	out = binary.BigEndian.AppendUint32(out, uint32(b.Time.Nanosecond()))
	return s.kv.Set(keyLastBlock, out)
}

func timestamp(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

// formatTime is how times appear in rejection messages.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }
