package issuerhost;

import org.jpos.iso.IFB_BITMAP;
import org.jpos.iso.IFB_LLHBINARY;
import org.jpos.iso.IFB_LLLBINARY;
import org.jpos.iso.IFB_LLLCHAR;
import org.jpos.iso.IFB_LLNUM;
import org.jpos.iso.IFB_NUMERIC;
import org.jpos.iso.IF_CHAR;
import org.jpos.iso.ISOBasePackager;
import org.jpos.iso.ISOFieldPackager;

/**
 * pingate's issuer dialect (ISO 8583:1987, binary/BCD) in jPOS terms, from
 * the "Encoding" and "Data elements" tables of docs/iso8583-issuer.md alone.
 * Only the listed elements are declared: a message carrying another one does
 * not unpack.
 *
 * <ul>
 *   <li>{@code n} fixed: BCD right-aligned, an odd count behind a zero nibble:
 *       IFB_NUMERIC with pad (BCDInterpreter.LEFT_PADDED).
 *   <li>{@code n} variable: a 1-byte BCD LL counting digits, the digits
 *       right-aligned: IFB_LLNUM with pad.
 *   <li>{@code an}, {@code ans} fixed: ASCII (IF_CHAR); {@code ans} variable:
 *       BCD LLL counting bytes (IFB_LLLCHAR).
 *   <li>PIN blocks: one binary length byte (08 or 10), then the raw block:
 *       IFB_LLHBINARY.
 *   <li>DE 48: BCD LLL counting bytes, then tagged subfields (2 ASCII digits,
 *       1 BCD length byte, ASCII): kept raw (IFB_LLLBINARY) and parsed by
 *       {@link IssuerHost#de48}.
 * </ul>
 */
final class IssuerPackager extends ISOBasePackager {
  IssuerPackager() {
    ISOFieldPackager[] f = new ISOFieldPackager[129];
    f[0] = new IFB_NUMERIC(4, "Message type indicator", true);
    f[1] = new IFB_BITMAP(16, "Bitmap");
    f[2] = new IFB_LLNUM(19, "Primary account number", true);
    f[3] = new IFB_NUMERIC(6, "Processing code", true);
    f[7] = new IFB_NUMERIC(10, "Transmission date and time", true);
    f[11] = new IFB_NUMERIC(6, "Systems trace audit number", true);
    f[12] = new IFB_NUMERIC(6, "Local transaction time", true);
    f[13] = new IFB_NUMERIC(4, "Local transaction date", true);
    f[32] = new IFB_LLNUM(11, "Acquiring institution id", true);
    f[37] = new IF_CHAR(12, "Retrieval reference number");
    f[39] = new IF_CHAR(2, "Response code");
    f[41] = new IF_CHAR(8, "Card acceptor terminal id");
    f[42] = new IF_CHAR(15, "Card acceptor id code");
    f[48] = new IFB_LLLBINARY(999, "Additional data - private");
    f[52] = new IFB_LLHBINARY(16, "PIN data");
    f[53] = new IFB_NUMERIC(16, "Security related control information", true);
    f[70] = new IFB_NUMERIC(3, "Network management information code", true);
    f[90] = new IFB_NUMERIC(42, "Original data elements", true);
    f[100] = new IFB_LLNUM(11, "Receiving institution id", true);
    f[123] = new IFB_LLLCHAR(999, "Key exchange data");
    f[125] = new IFB_LLHBINARY(16, "New PIN block");
    setFieldPackager(f);
  }
}
