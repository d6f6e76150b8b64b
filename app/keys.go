package app

import (
	"encoding/binary"
	"fmt"
)

// Key layout of the single IAVL tree. One byte of prefix, then fixed-width
// binary components (addresses are 20 bytes, patient ids and hashes 32,
// sequences 8 big-endian so that byte order is numeric order) or
// length-prefixed strings. Values are deterministic protobuf unless noted.
// Index entries whose information is all in the key hold the single byte
// indexMarker, because IAVL does not store empty values.
//
// This table is mirrored in store/README.md; change both together.
const (
	prefixMeta          byte = 0x00 // 0x00 | name                         → raw bytes (chain id, last block, next proposal id, params changes)
	prefixParams        byte = 0x01 // 0x01                                → Params
	prefixOrganization  byte = 0x02 // 0x02 | org id                       → Organization
	prefixMember        byte = 0x03 // 0x03 | address                      → Member
	prefixOrgMember     byte = 0x04 // 0x04 | len | org id | address        → role (1 byte)
	prefixAccount       byte = 0x05 // 0x05 | address                      → Account
	prefixPatient       byte = 0x06 // 0x06 | patient id                   → Patient
	prefixOwner         byte = 0x07 // 0x07 | owner address                → patient id
	prefixPermission    byte = 0x08 // 0x08 | patient id | grantee         → Permission
	prefixGrant         byte = 0x09 // 0x09 | grantee | patient id         → marker
	prefixRecord        byte = 0x0a // 0x0a | patient id | seq             → Record
	_                   byte = 0x0b // retired: was sha256 | patient id | seq (see docs/decisions.md)
	prefixAccess        byte = 0x0c // 0x0c | patient id | seq             → AccessEvent
	prefixLastAccess    byte = 0x0d // 0x0d | patient id | record | member → access seq (8 bytes)
	prefixStudy         byte = 0x0e // 0x0e | study id                     → Study
	prefixShare         byte = 0x0f // 0x0f | patient id | seq             → Share
	_                   byte = 0x10 // retired: was sha256 | patient id | seq (see docs/decisions.md)
	prefixStudyShare    byte = 0x11 // 0x11 | len | study id | study seq    → patient id | share seq (raw, 40 bytes)
	prefixLastShareRead byte = 0x12 // 0x12 | patient id | share | member → access seq (8 bytes)
	prefixValidator     byte = 0x13 // 0x13 | ed25519 consensus key       → Validator
	prefixProposal      byte = 0x14 // 0x14 | proposal id                  → Proposal
	prefixUnseen        byte = 0x15 // 0x15 | ed25519 consensus key       → power not yet seen signing (8 bytes)
	prefixKeyChanges    byte = 0x16 // 0x16 | ed25519 consensus key       → executed changes of its power (8 bytes)
	prefixRegistrar     byte = 0x17 // 0x17 | len | org id | standing | address → marker
	prefixEmergencyRead byte = 0x18 // 0x18 | clinician address            → EmergencyReads
	prefixBreakGlass    byte = 0x19 // 0x19 | service address | seq        → patient id | access seq (raw, 40 bytes)
	prefixBreakGlassLen byte = 0x1a // 0x1a | service address              → entries in its break-glass log (8 bytes)
)

const indexMarker = 1

var (
	keyChainID   = []byte{prefixMeta, 'c'}
	keyLastBlock = []byte{prefixMeta, 'b'}
	// The id the next proposal gets (8 bytes; absent: 1).
	keyNextProposal = []byte{prefixMeta, 'p'}
	// How many executed proposals changed the params (8 bytes; absent: 0).
	keyParamsChanges = []byte{prefixMeta, 'P'}
	keyParams        = []byte{prefixParams}
)

func join(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// lenPrefixed encodes a string of at most 255 bytes (ids are validated to 64).
func lenPrefixed(s string) []byte { return append([]byte{byte(len(s))}, s...) }

func organizationKey(id string) []byte { return join([]byte{prefixOrganization}, []byte(id)) }
func memberKey(addr []byte) []byte     { return join([]byte{prefixMember}, addr) }
func orgMemberPrefix(org string) []byte {
	return join([]byte{prefixOrgMember}, lenPrefixed(org))
}
func orgMemberKey(org string, addr []byte) []byte { return join(orgMemberPrefix(org), addr) }
func accountKey(addr []byte) []byte               { return join([]byte{prefixAccount}, addr) }
func emergencyReadsKey(clinician []byte) []byte   { return join([]byte{prefixEmergencyRead}, clinician) }
func patientKey(id []byte) []byte                 { return join([]byte{prefixPatient}, id) }
func ownerKey(owner []byte) []byte                { return join([]byte{prefixOwner}, owner) }
func permissionPrefix(patient []byte) []byte      { return join([]byte{prefixPermission}, patient) }
func permissionKey(patient, grantee []byte) []byte {
	return join(permissionPrefix(patient), grantee)
}
func grantPrefix(grantee []byte) []byte           { return join([]byte{prefixGrant}, grantee) }
func grantKey(grantee, patient []byte) []byte     { return join(grantPrefix(grantee), patient) }
func recordPrefix(patient []byte) []byte          { return join([]byte{prefixRecord}, patient) }
func recordKey(patient []byte, seq uint64) []byte { return join(recordPrefix(patient), u64(seq)) }
func accessPrefix(patient []byte) []byte          { return join([]byte{prefixAccess}, patient) }
func accessKey(patient []byte, seq uint64) []byte { return join(accessPrefix(patient), u64(seq)) }
func lastAccessKey(patient []byte, record uint64, member []byte) []byte {
	return join([]byte{prefixLastAccess}, patient, u64(record), member)
}
func lastShareReadKey(patient []byte, share uint64, member []byte) []byte {
	return join([]byte{prefixLastShareRead}, patient, u64(share), member)
}
func studyKey(id string) []byte                  { return join([]byte{prefixStudy}, []byte(id)) }
func sharePrefix(patient []byte) []byte          { return join([]byte{prefixShare}, patient) }
func shareKey(patient []byte, seq uint64) []byte { return join(sharePrefix(patient), u64(seq)) }
func studySharePrefix(study string) []byte {
	return join([]byte{prefixStudyShare}, lenPrefixed(study))
}
func studyShareKey(study string, seq uint64) []byte { return join(studySharePrefix(study), u64(seq)) }

func validatorKey(pubKey []byte) []byte  { return join([]byte{prefixValidator}, pubKey) }
func proposalKey(id uint64) []byte       { return join([]byte{prefixProposal}, u64(id)) }
func unseenKey(pubKey []byte) []byte     { return join([]byte{prefixUnseen}, pubKey) }
func keyChangesKey(pubKey []byte) []byte { return join([]byte{prefixKeyChanges}, pubKey) }
func registrarPrefix(org string) []byte {
	return join([]byte{prefixRegistrar}, lenPrefixed(org))
}

// The standing byte of a registrar index key: an organization's active
// registrars sort before the rest, so its first key says whether it has
// one, however many it has suspended.
const (
	registrarActive   byte = 0
	registrarInactive byte = 1
)

// registrarKey is the registrar index key of registrar addr of org,
// active or not.
func registrarKey(org string, active bool, addr []byte) []byte {
	standing := registrarInactive
	if active {
		standing = registrarActive
	}
	return join(registrarPrefix(org), []byte{standing}, addr)
}

// parseRegistrarKey splits a registrar index key (registrarKey).
func parseRegistrarKey(key []byte) (org string, active bool, addr []byte, err error) {
	if len(key) < 2 || len(key) != 2+int(key[1])+1+AddressSize || key[2+int(key[1])] > registrarInactive {
		return "", false, nil, fmt.Errorf("%w: registrar index key %x", ErrInternal, key)
	}
	n := 2 + int(key[1])
	return string(key[2:n]), key[n] == registrarActive, key[n+1:], nil
}

// breakGlassKey is entry seq of emergency service service's break-glass log.
func breakGlassKey(service []byte, seq uint64) []byte {
	return join(breakGlassPrefix(service), u64(seq))
}

func breakGlassPrefix(service []byte) []byte { return join([]byte{prefixBreakGlass}, service) }
func breakGlassLenKey(service []byte) []byte { return join([]byte{prefixBreakGlassLen}, service) }

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
