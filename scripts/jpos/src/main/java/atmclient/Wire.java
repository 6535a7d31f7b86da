package atmclient;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.jpos.iso.BaseChannel;
import org.jpos.iso.ISOException;
import org.jpos.iso.ISOMsg;
import org.jpos.iso.ISOPackager;
import org.jpos.iso.channel.ASCIIChannel;
import org.jpos.iso.channel.NACChannel;
import org.jpos.iso.packager.GenericPackager;

/**
 * The wire of docs/iso8583-acquirer.md in jPOS terms: the packager written
 * from its data element table, the channel of its default framing, and the
 * golden messages it publishes.
 *
 * <p>Framing {@code binary2} is a 2-byte big-endian length counting the bytes
 * after it, and nothing else before the message: jPOS's NACChannel with no
 * TPDU header does exactly that. {@code ascii4}, 4 ASCII digits, is jPOS's
 * ASCIIChannel.
 */
final class Wire {
  private Wire() {}

  static ISOPackager packager() throws ISOException {
    try (InputStream in = Wire.class.getResourceAsStream("acquirer-packager.xml")) {
      if (in == null) {
        throw new ISOException("acquirer-packager.xml is not on the class path");
      }
      return new GenericPackager(in);
    } catch (IOException e) {
      throw new ISOException("read acquirer-packager.xml", e);
    }
  }

  /** A connected channel of framing ("binary2" or "ascii4") with a read timeout. */
  static BaseChannel connect(String framing, String host, int port, ISOPackager p, int timeoutMillis)
      throws IOException {
    BaseChannel ch = "ascii4".equals(framing) ? new ASCIIChannel(host, port, p) : new NACChannel(host, port, p, null);
    ch.setTimeout(timeoutMillis);
    ch.connect();
    return ch;
  }

  /** The length header of framing for a message of n bytes (n may be out of range, on purpose). */
  static byte[] header(String framing, int n) {
    if ("ascii4".equals(framing)) {
      return String.format("%04d", n).getBytes(StandardCharsets.US_ASCII);
    }
    return new byte[] {(byte) (n >> 8), (byte) n};
  }

  static ISOMsg unpack(ISOPackager p, byte[] text) throws ISOException {
    ISOMsg m = new ISOMsg();
    m.setPackager(p);
    m.unpack(text);
    return m;
  }

  /**
   * The golden messages of the document: name → the ASCII text of the
   * message (length header excluded), read from each {@code **name** —}
   * caption and the {@code text:} line of the block after it.
   */
  static Map<String, byte[]> goldens(Path doc) throws IOException {
    Map<String, byte[]> out = new LinkedHashMap<>();
    Pattern caption = Pattern.compile("^\\*\\*([0-9a-z-]+)\\*\\* — ");
    String name = null;
    for (String line : Files.readAllLines(doc, StandardCharsets.UTF_8)) {
      Matcher m = caption.matcher(line);
      if (m.find()) {
        name = m.group(1);
      } else if (name != null && line.startsWith("text: ")) {
        out.put(name, line.substring("text: ".length()).getBytes(StandardCharsets.US_ASCII));
        name = null;
      }
    }
    return out;
  }
}
