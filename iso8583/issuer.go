package iso8583

import (
	moov "github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/encoding"
	"github.com/moov-io/iso8583/field"
	"github.com/moov-io/iso8583/prefix"
	"github.com/moov-io/iso8583/sort"
)

// IssuerSpec is the dialect we speak to card-issuing hosts: the same field
// numbers and meanings as AcquirerSpec, in the packed binary flavour such
// hosts typically use. The choices, field by field below:
//
//   - MTI: n4 as 2 BCD bytes (0x01 0x00 for 0100).
//   - Bitmap: raw binary, 8 bytes per 64 bits, secondary when bit 1 is set.
//   - n fields: BCD, two digits a byte, right-aligned (an odd count gets a
//     leading zero nibble: n3 "001" is 0x00 0x01); variable n fields carry a
//     1-byte BCD LL prefix counting digits (PAN of 16 digits: 0x16 then 8
//     bytes).
//   - an and ans fields: ASCII, printable only; variable ones carry a BCD
//     length prefix counting bytes: LL in 1 byte, LLL in 2 bytes (0x01 0x23
//     for 123).
//   - PIN blocks (DE 52, DE 125): raw bytes behind a 1-byte binary length
//     (0x08 or 0x10); any other length is a format error.
//   - DE 48: a BCD LLL (2 bytes) over subfields of a 2-digit ASCII tag, a
//     1-byte BCD LL length and ASCII data.
//
// Character sets are enforced as in AcquirerSpec, and a field not listed
// here makes the message a format error.
var IssuerSpec = &moov.MessageSpec{
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

// NewIssuerMessage returns an empty message of the issuer dialect.
func NewIssuerMessage() *moov.Message { return moov.NewMessage(IssuerSpec) }
