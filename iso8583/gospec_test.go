package iso8583

// The dialects as Go specs, as they were before they became spec files
// (dialects/*.yaml). TestBuiltinSpecsEqualGoSpecs holds the embedded specs
// to these field by field, so moving the specs to data changed nothing on
// the wire.

import (
	moov "github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/encoding"
	"github.com/moov-io/iso8583/field"
	"github.com/moov-io/iso8583/prefix"
	"github.com/moov-io/iso8583/sort"
)

var goAcquirerSpec = &moov.MessageSpec{
	Name: "pingate acquirer (ISO 8583:1987 ASCII)",
	Fields: map[int]field.Field{
		// MTI, n4: 0100, 0110, 0420, 0430, 0800 or 0810.
		0: field.NewString(&field.Spec{
			Length:      4,
			Description: "Message Type Indicator",
			Enc:         asciiN,
			Pref:        prefix.ASCII.Fixed,
		}),
		// Bitmap: primary 64 bits as 16 hex digits; a secondary one follows
		// when bit 1 is set (fields 65-128, here 70, 90, 100, 123, 125).
		1: field.NewBitmap(&field.Spec{
			Length:      8,
			Description: "Bitmap",
			Enc:         encoding.BytesToASCIIHex,
			Pref:        prefix.Hex.Fixed,
		}),
		// DE 2 Primary account number, LLVAR n..19.
		2: field.NewString(&field.Spec{
			Length:      19,
			Description: "Primary Account Number",
			Enc:         asciiN,
			Pref:        asciiLL,
		}),
		// DE 3 Processing code, n6: 700000 change, 710000 reset, 720000 unblock.
		3: field.NewString(&field.Spec{
			Length:      6,
			Description: "Processing Code",
			Enc:         asciiN,
			Pref:        prefix.ASCII.Fixed,
		}),
		// DE 7 Transmission date and time, n10 MMDDhhmmss, UTC.
		7: field.NewString(&field.Spec{
			Length:      10,
			Description: "Transmission Date & Time (MMDDhhmmss, UTC)",
			Enc:         asciiN,
			Pref:        prefix.ASCII.Fixed,
		}),
		// DE 11 Systems trace audit number, n6, set by the message's sender.
		11: field.NewString(&field.Spec{
			Length:      6,
			Description: "Systems Trace Audit Number (STAN)",
			Enc:         asciiN,
			Pref:        prefix.ASCII.Fixed,
		}),
		// DE 12 Local transaction time, n6 hhmmss at the terminal.
		12: field.NewString(&field.Spec{
			Length:      6,
			Description: "Local Transaction Time (hhmmss)",
			Enc:         asciiN,
			Pref:        prefix.ASCII.Fixed,
		}),
		// DE 13 Local transaction date, n4 MMDD at the terminal.
		13: field.NewString(&field.Spec{
			Length:      4,
			Description: "Local Transaction Date (MMDD)",
			Enc:         asciiN,
			Pref:        prefix.ASCII.Fixed,
		}),
		// DE 32 Acquiring institution identification code, LLVAR n..11.
		32: field.NewString(&field.Spec{
			Length:      11,
			Description: "Acquiring Institution Identification Code",
			Enc:         asciiN,
			Pref:        asciiLL,
		}),
		// DE 37 Retrieval reference number, an12.
		37: field.NewString(&field.Spec{
			Length:      12,
			Description: "Retrieval Reference Number",
			Enc:         asciiAN,
			Pref:        prefix.ASCII.Fixed,
		}),
		// DE 39 Response code, an2 (codes.go).
		39: field.NewString(&field.Spec{
			Length:      2,
			Description: "Response Code",
			Enc:         asciiAN,
			Pref:        prefix.ASCII.Fixed,
		}),
		// DE 41 Card acceptor terminal identification, ans8.
		41: field.NewString(&field.Spec{
			Length:      8,
			Description: "Card Acceptor Terminal Identification",
			Enc:         asciiANS,
			Pref:        prefix.ASCII.Fixed,
		}),
		// DE 42 Card acceptor identification code, ans15.
		42: field.NewString(&field.Spec{
			Length:      15,
			Description: "Card Acceptor Identification Code",
			Enc:         asciiANS,
			Pref:        prefix.ASCII.Fixed,
		}),
		// DE 48 Additional data - private, LLLVAR ans..999: a sequence of
		// subfields, each a 2-digit tag, an LL length and ans data, in tag order.
		48: field.NewComposite(&field.Spec{
			Length:      999,
			Description: "Additional Data - Private",
			Pref:        asciiLLL,
			Tag: &field.TagSpec{
				Length: 2,
				Enc:    asciiN,
				Sort:   sort.StringsByInt,
			},
			Subfields: map[string]field.Field{
				// 48.01 Teller id, LL ans..16: the branch employee who keyed
				// the operation.
				"01": field.NewString(&field.Spec{
					Length:      16,
					Description: "Teller ID",
					Enc:         asciiANS,
					Pref:        asciiLL,
				}),
				// 48.02 Identity-check reference, LL ans..32: the branch
				// system's reference to the identity check it performed,
				// never an identity document number.
				"02": field.NewString(&field.Spec{
					Length:      32,
					Description: "Identity-Check Reference",
					Enc:         asciiANS,
					Pref:        asciiLL,
				}),
				// 48.03 Supervisor id, LL ans..16: the approver under dual
				// control.
				"03": field.NewString(&field.Spec{
					Length:      16,
					Description: "Supervisor ID",
					Enc:         asciiANS,
					Pref:        asciiLL,
				}),
				// 48.04 Branch id, LL ans..16.
				"04": field.NewString(&field.Spec{
					Length:      16,
					Description: "Branch ID",
					Enc:         asciiANS,
					Pref:        asciiLL,
				}),
			},
		}),
		// DE 52 PIN data: the current PIN block (change only). Deviation from
		// b64: LLVAR hex, 16 or 32 hex digits (8- or 16-byte block).
		52: field.NewBinary(&field.Spec{
			Length:      32,
			Description: "PIN Data (LLVAR hex: 8- or 16-byte ISO 9564-1 block)",
			Enc:         encoding.BytesToASCIIHex,
			Pref:        asciiLL,
			Packer:      pinBlockCodec{hexASCII: true},
			Unpacker:    pinBlockCodec{hexASCII: true},
		}),
		// DE 53 Security related control information, n16: positions 1-2 the
		// ISO 9564-1 PIN block format (00, 01, 03, 04), 3-4 the acquirer's
		// key index, 5-16 zeros.
		53: field.NewString(&field.Spec{
			Length:      16,
			Description: "Security Related Control Information",
			Enc:         asciiN,
			Pref:        prefix.ASCII.Fixed,
		}),
		// DE 70 Network management information code, n3: 001 sign-on,
		// 002 sign-off, 161 key change, 301 echo.
		70: field.NewString(&field.Spec{
			Length:      3,
			Description: "Network Management Information Code",
			Enc:         asciiN,
			Pref:        prefix.ASCII.Fixed,
		}),
		// DE 90 Original data elements, n42: original MTI (4), original
		// STAN (6), original transmission date and time (10), original
		// acquirer id (11, right-justified, zero-filled), forwarding
		// institution id (11, zeros). See OriginalData.
		90: field.NewString(&field.Spec{
			Length:      42,
			Description: "Original Data Elements",
			Enc:         asciiN,
			Pref:        prefix.ASCII.Fixed,
		}),
		// DE 100 Receiving institution identification code, LLVAR n..11: the
		// issuer the request is routed to.
		100: field.NewString(&field.Spec{
			Length:      11,
			Description: "Receiving Institution Identification Code",
			Enc:         asciiN,
			Pref:        asciiLL,
		}),
		// DE 123 Key exchange data (private), LLLVAR ans..999: in a key
		// change (0800, NMI 161) the new zone PIN key enciphered under the
		// zone master key as hex, a "/", and the new key's check value in
		// hex. See KeyExchange.
		123: field.NewString(&field.Spec{
			Length:      999,
			Description: "Key Exchange Data (key under ZMK hex / KCV)",
			Enc:         asciiANS,
			Pref:        asciiLLL,
		}),
		// DE 125 New PIN block (private), LLLVAR hex: 016 or 032 hex digits
		// (8- or 16-byte block) for change and reset.
		125: field.NewBinary(&field.Spec{
			Length:      32,
			Description: "New PIN Block (LLLVAR hex: 8- or 16-byte ISO 9564-1 block)",
			Enc:         encoding.BytesToASCIIHex,
			Pref:        asciiLLL,
			Packer:      pinBlockCodec{hexASCII: true},
			Unpacker:    pinBlockCodec{hexASCII: true},
		}),
	},
}

var goIssuerSpec = &moov.MessageSpec{
	Name: "pingate issuer (ISO 8583:1987 binary/BCD)",
	Fields: map[int]field.Field{
		// MTI, n4 in 2 BCD bytes.
		0: field.NewString(&field.Spec{
			Length:      4,
			Description: "Message Type Indicator",
			Enc:         bcdN,
			Pref:        prefix.BCD.Fixed,
		}),
		// Bitmap, 8 raw bytes (primary), another 8 when bit 1 is set.
		1: field.NewBitmap(&field.Spec{
			Length:      8,
			Description: "Bitmap",
			Enc:         encoding.Binary,
			Pref:        prefix.Binary.Fixed,
		}),
		// DE 2 Primary account number, n..19 BCD, BCD LL.
		2: field.NewString(&field.Spec{
			Length:      19,
			Description: "Primary Account Number",
			Enc:         bcdN,
			Pref:        bcdLL,
		}),
		// DE 3 Processing code, n6 in 3 BCD bytes.
		3: field.NewString(&field.Spec{
			Length:      6,
			Description: "Processing Code",
			Enc:         bcdN,
			Pref:        prefix.BCD.Fixed,
		}),
		// DE 7 Transmission date and time, n10 MMDDhhmmss UTC, 5 BCD bytes.
		7: field.NewString(&field.Spec{
			Length:      10,
			Description: "Transmission Date & Time (MMDDhhmmss, UTC)",
			Enc:         bcdN,
			Pref:        prefix.BCD.Fixed,
		}),
		// DE 11 STAN, n6 in 3 BCD bytes.
		11: field.NewString(&field.Spec{
			Length:      6,
			Description: "Systems Trace Audit Number (STAN)",
			Enc:         bcdN,
			Pref:        prefix.BCD.Fixed,
		}),
		// DE 12 Local transaction time, n6 hhmmss in 3 BCD bytes.
		12: field.NewString(&field.Spec{
			Length:      6,
			Description: "Local Transaction Time (hhmmss)",
			Enc:         bcdN,
			Pref:        prefix.BCD.Fixed,
		}),
		// DE 13 Local transaction date, n4 MMDD in 2 BCD bytes.
		13: field.NewString(&field.Spec{
			Length:      4,
			Description: "Local Transaction Date (MMDD)",
			Enc:         bcdN,
			Pref:        prefix.BCD.Fixed,
		}),
		// DE 32 Acquiring institution identification code, n..11 BCD, BCD LL.
		32: field.NewString(&field.Spec{
			Length:      11,
			Description: "Acquiring Institution Identification Code",
			Enc:         bcdN,
			Pref:        bcdLL,
		}),
		// DE 37 Retrieval reference number, an12 ASCII.
		37: field.NewString(&field.Spec{
			Length:      12,
			Description: "Retrieval Reference Number",
			Enc:         asciiAN,
			Pref:        prefix.ASCII.Fixed,
		}),
		// DE 39 Response code, an2 ASCII.
		39: field.NewString(&field.Spec{
			Length:      2,
			Description: "Response Code",
			Enc:         asciiAN,
			Pref:        prefix.ASCII.Fixed,
		}),
		// DE 41 Card acceptor terminal identification, ans8 ASCII.
		41: field.NewString(&field.Spec{
			Length:      8,
			Description: "Card Acceptor Terminal Identification",
			Enc:         asciiANS,
			Pref:        prefix.ASCII.Fixed,
		}),
		// DE 42 Card acceptor identification code, ans15 ASCII.
		42: field.NewString(&field.Spec{
			Length:      15,
			Description: "Card Acceptor Identification Code",
			Enc:         asciiANS,
			Pref:        prefix.ASCII.Fixed,
		}),
		// DE 48 Additional data - private, BCD LLL (2 bytes) over tagged
		// subfields: 2-digit ASCII tag, 1-byte BCD LL, ASCII data.
		48: field.NewComposite(&field.Spec{
			Length:      999,
			Description: "Additional Data - Private",
			Pref:        bcdLLL,
			Tag: &field.TagSpec{
				Length: 2,
				Enc:    asciiN,
				Sort:   sort.StringsByInt,
			},
			Subfields: map[string]field.Field{
				// 48.01 Teller id, ans..16.
				"01": field.NewString(&field.Spec{
					Length:      16,
					Description: "Teller ID",
					Enc:         asciiANS,
					Pref:        bcdLL,
				}),
				// 48.02 Identity-check reference, ans..32.
				"02": field.NewString(&field.Spec{
					Length:      32,
					Description: "Identity-Check Reference",
					Enc:         asciiANS,
					Pref:        bcdLL,
				}),
				// 48.03 Supervisor id, ans..16.
				"03": field.NewString(&field.Spec{
					Length:      16,
					Description: "Supervisor ID",
					Enc:         asciiANS,
					Pref:        bcdLL,
				}),
				// 48.04 Branch id, ans..16.
				"04": field.NewString(&field.Spec{
					Length:      16,
					Description: "Branch ID",
					Enc:         asciiANS,
					Pref:        bcdLL,
				}),
			},
		}),
		// DE 52 PIN data: current PIN block, raw 8 or 16 bytes, 1-byte
		// binary length.
		52: field.NewBinary(&field.Spec{
			Length:      16,
			Description: "PIN Data (binary LVAR: 8- or 16-byte ISO 9564-1 block)",
			Enc:         encoding.Binary,
			Pref:        prefix.Binary.L,
			Packer:      pinBlockCodec{},
			Unpacker:    pinBlockCodec{},
		}),
		// DE 53 Security related control information, n16 in 8 BCD bytes;
		// same layout as the acquirer dialect.
		53: field.NewString(&field.Spec{
			Length:      16,
			Description: "Security Related Control Information",
			Enc:         bcdN,
			Pref:        prefix.BCD.Fixed,
		}),
		// DE 70 Network management information code, n3 in 2 BCD bytes.
		70: field.NewString(&field.Spec{
			Length:      3,
			Description: "Network Management Information Code",
			Enc:         bcdN,
			Pref:        prefix.BCD.Fixed,
		}),
		// DE 90 Original data elements, n42 in 21 BCD bytes; same layout as
		// the acquirer dialect (see OriginalData).
		90: field.NewString(&field.Spec{
			Length:      42,
			Description: "Original Data Elements",
			Enc:         bcdN,
			Pref:        prefix.BCD.Fixed,
		}),
		// DE 100 Receiving institution identification code, n..11 BCD, BCD LL.
		100: field.NewString(&field.Spec{
			Length:      11,
			Description: "Receiving Institution Identification Code",
			Enc:         bcdN,
			Pref:        bcdLL,
		}),
		// DE 123 Key exchange data, ans..999 ASCII, BCD LLL (2 bytes).
		123: field.NewString(&field.Spec{
			Length:      999,
			Description: "Key Exchange Data (key under ZMK hex / KCV)",
			Enc:         asciiANS,
			Pref:        bcdLLL,
		}),
		// DE 125 New PIN block, raw 8 or 16 bytes, 1-byte binary length.
		125: field.NewBinary(&field.Spec{
			Length:      16,
			Description: "New PIN Block (binary LVAR: 8- or 16-byte ISO 9564-1 block)",
			Enc:         encoding.Binary,
			Pref:        prefix.Binary.L,
			Packer:      pinBlockCodec{},
			Unpacker:    pinBlockCodec{},
		}),
	},
}
