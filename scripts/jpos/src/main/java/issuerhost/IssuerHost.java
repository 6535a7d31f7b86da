package issuerhost;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.crypto.Cipher;
import javax.crypto.spec.SecretKeySpec;
import org.bouncycastle.crypto.engines.AESEngine;
import org.bouncycastle.crypto.macs.CMac;
import org.bouncycastle.crypto.params.KeyParameter;
import org.jpos.iso.ISOException;
import org.jpos.iso.BaseChannel;
import org.jpos.iso.ISOMsg;
import org.jpos.iso.ISOPackager;
import org.jpos.iso.channel.ASCIIChannel;
import org.jpos.iso.packager.GenericPackager;
import org.jpos.iso.ISOUtil;
import org.jpos.iso.channel.NACChannel;

/**
 * An issuer host for pingate, built on jPOS from docs/iso8583-issuer.md and
 * docs/dev-keys.md alone. It listens on TCP (binary2 framing: jPOS's
 * NACChannel without a header), answers sign-on, echo and sign-off, keeps a
 * PIN ledger of its own (format 4 blocks deciphered under the issuer zone PIN
 * key), applies changes, resets and unblocks, and undoes them on an 0420
 * reversal advice. Every element it receives is checked against the
 * document; a difference is printed as a line starting "FAIL ".
 *
 * <p>It never prints a PIN, a PIN block, a full PAN or key bytes: cards are
 * named by the label of the card file. Each card may carry a "mode", a fault
 * the host plays on that card's first request (late answer, lost link,
 * missing DE 39, a mismatching or duplicate answer, a given response code,
 * an advice not answered once or answered 96). The test harness (cmd/pingate
 * TestJPOSIssuer) reads the lines it prints.
 *
 * <pre>
 * java issuerhost.IssuerHost --keys docs/dev-keys.md --doc docs/iso8583-issuer.md --listen 127.0.0.1:0 \
 *   --institution 999001 --receiving 300009 --key-index 1 --cards FILE [--signon-refuse N] [--echo-refuse N]
 *   [--host-echo] [--weak PIN] [--framing binary2|ascii4] [--dialect issuer|acquirer] [--bare-0810]
 * </pre>
 *
 * Card file: one card a line, "label pan pin [modes]", modes comma-separated:
 * for the first 0100, late=MS, hold (never answered), otherlink (answered on
 * another open link), close, answerclose
 * (answer, then close the link), no39, code=XX,
 * dup, full (DE 12 and 13 returned), wrong7, wrong11, wrong32, no41,
 * garbage; for the first 0420, revnone, rev96, revbare (no DE 2, 90, 100);
 * revhold leaves every 0420 of the card unanswered until "release LABEL"
 * arrives on standard input.
 */
public final class IssuerHost {
  private ISOPackager packager = new IssuerPackager();
  private String framing = "binary2";
  private boolean bare0810;
  private final byte[] zpk;
  private final String institution;
  private final String receiving;
  private final String keyIndex;
  private final Set<String> weak = new HashSet<>();
  private int signOnRefusals;
  private int echoRefusals;
  private final boolean hostEcho;
  private final Map<String, Card> cards = new LinkedHashMap<>();
  private final Map<String, Applied> applied = new HashMap<>(); // original DE 11|7|32 → what it did
  private final Set<String> reversedAhead = new HashSet<>(); // advices that came before their original
  private final Set<String> stans = new HashSet<>();
  private final ScheduledExecutorService later = Executors.newScheduledThreadPool(2);
  private int hostStan = 500000;
  private final List<BaseChannel> links = new ArrayList<>(); // open links, oldest first

  static final class Card {
    final String label;
    final String pan;
    final String initialPIN;
    String pin;
    int tries;
    String mode; // consumed by the first 0100 (or 0420 for rev*)
    String advMode;

    Card(String label, String pan, String pin, String mode) {
      this.label = label;
      this.pan = pan;
      this.initialPIN = pin;
      this.pin = pin;
      for (String m : mode == null ? new String[0] : mode.split(",")) {
        if (m.startsWith("rev")) {
          this.advMode = m;
        } else {
          this.mode = m;
        }
      }
    }
  }

  static final class Applied {
    final Card card;
    final String prevPIN;
    final int prevTries;
    final ISOMsg request;
    boolean undone;

    Applied(Card card, String prevPIN, int prevTries, ISOMsg request) {
      this.card = card;
      this.prevPIN = prevPIN;
      this.prevTries = prevTries;
      this.request = request;
    }
  }

  private IssuerHost(byte[] zpk, String institution, String receiving, String keyIndex, boolean hostEcho) {
    this.zpk = zpk;
    this.institution = institution;
    this.receiving = receiving;
    this.keyIndex = keyIndex;
    this.hostEcho = hostEcho;
  }

  public static void main(String[] argv) throws Exception {
    Map<String, String> a = new HashMap<>();
    Set<String> flags = Set.of("--host-echo", "--bare-0810");
    List<String> weak = new ArrayList<>();
    for (int i = 0; i < argv.length; i++) {
      if (flags.contains(argv[i])) {
        a.put(argv[i], "true");
      } else if (argv[i].equals("--weak")) {
        weak.add(argv[++i]);
      } else {
        a.put(argv[i], argv[++i]);
      }
    }
    byte[] key = devKey(Path.of(a.get("--keys")), "dev-issuer-zpk");
    IssuerHost h = new IssuerHost(key, a.get("--institution"), a.get("--receiving"),
        String.format("%02d", Integer.parseInt(a.getOrDefault("--key-index", "1"))), a.containsKey("--host-echo"));
    h.weak.addAll(weak);
    h.framing = a.getOrDefault("--framing", "binary2");
    h.bare0810 = a.containsKey("--bare-0810");
    if ("acquirer".equals(a.get("--dialect"))) {
      // The built-in dialect "acquirer" (docs/iso8583-acquirer.md), which an
      // issuer may speak too: the ATM client's packager of it.
      try (java.io.InputStream in = IssuerHost.class.getResourceAsStream("/atmclient/acquirer-packager.xml")) {
        h.packager = new GenericPackager(in);
      }
    }
    h.signOnRefusals = Integer.parseInt(a.getOrDefault("--signon-refuse", "0"));
    h.echoRefusals = Integer.parseInt(a.getOrDefault("--echo-refuse", "0"));
    if (a.containsKey("--doc")) {
      h.checkWorkedExample(Path.of(a.get("--doc")));
    }
    for (String line : Files.readAllLines(Path.of(a.get("--cards")), StandardCharsets.US_ASCII)) {
      String[] f = line.trim().split("\\s+");
      if (f.length >= 3) {
        h.cards.put(f[1], new Card(f[0], f[1], f[2], f.length > 3 ? f[3] : null));
      }
    }
    Runtime.getRuntime().addShutdownHook(new Thread(h::printLedger));
    Thread control = new Thread(h::control, "control");
    control.setDaemon(true);
    control.start();
    String[] hp = a.getOrDefault("--listen", "127.0.0.1:0").split(":");
    ServerSocket ss = new ServerSocket();
    ss.bind(new InetSocketAddress(InetAddress.getByName(hp[0]), Integer.parseInt(hp[1])));
    out("listening " + hp[0] + ":" + ss.getLocalPort());
    for (int link = 1; ; link++) {
      BaseChannel ch = "ascii4".equals(h.framing) ? new ASCIIChannel(h.packager) : new NACChannel(h.packager, null);
      ch.accept(ss);
      final int n = link;
      Thread t = new Thread(() -> h.serve(ch, n), "link-" + n);
      t.setDaemon(true);
      t.start();
    }
  }

  static synchronized void out(String s) {
    System.out.println(s);
    System.out.flush();
  }

  static void fail(String s) {
    out("FAIL " + s);
  }

  /** Reads commands on standard input: "release LABEL" answers that card's advices again. */
  void control() {
    try (java.io.BufferedReader in = new java.io.BufferedReader(new java.io.InputStreamReader(System.in, StandardCharsets.US_ASCII))) {
      for (String line; (line = in.readLine()) != null; ) {
        String[] f = line.trim().split("\\s+");
        if (f.length == 2 && f[0].equals("release")) {
          synchronized (this) {
            for (Card c : cards.values()) {
              if (c.label.equals(f[1])) {
                c.advMode = null;
                out("released " + c.label);
              }
            }
          }
        }
      }
    } catch (IOException e) {
      // no more commands
    }
  }

  // ---- keys and PIN blocks ----

  /** The value of key label in docs/dev-keys.md's table, checked against its KCV column. */
  static byte[] devKey(Path keys, String label) throws IOException {
    Pattern row = Pattern.compile("^\\|\\s*`" + Pattern.quote(label) + "`\\s*\\|[^|]*\\|\\s*AES-128\\s*\\|\\s*([0-9A-F]+)\\s*\\|\\s*`([0-9A-F]{32})`");
    for (String line : Files.readAllLines(keys, StandardCharsets.UTF_8)) {
      Matcher m = row.matcher(line);
      if (m.find()) {
        byte[] k = ISOUtil.hex2byte(m.group(2));
        CMac cmac = new CMac(new AESEngine(), 128);
        cmac.init(new KeyParameter(k));
        byte[] mac = new byte[16];
        cmac.update(new byte[16], 0, 16);
        cmac.doFinal(mac, 0);
        String kcv = ISOUtil.hexString(mac).substring(0, 10);
        if (!kcv.equals(m.group(1))) {
          fail("dev-keys.md: KCV of " + label + " is " + kcv + ", the table says " + m.group(1));
        }
        return k;
      }
    }
    throw new IOException(label + ": no AES-128 row in " + keys);
  }

  /**
   * The PIN of an ISO 9564-1 format 4 block: PIN field = D(K, D(K, block) XOR PAN field).
   * Returns null (and prints a FAIL naming only what is wrong) on a bad block.
   */
  String decipher(byte[] block, String pan, String what) {
    if (block == null || block.length != 16) {
      fail(what + ": not a 16-byte format 4 block");
      return null;
    }
    try {
      Cipher c = Cipher.getInstance("AES/ECB/NoPadding");
      c.init(Cipher.DECRYPT_MODE, new SecretKeySpec(zpk, "AES"));
      byte[] x = c.doFinal(block);
      byte[] pf = panField(pan);
      for (int i = 0; i < 16; i++) {
        x[i] ^= pf[i];
      }
      byte[] p = c.doFinal(x);
      String h = ISOUtil.hexString(p);
      java.util.Arrays.fill(p, (byte) 0);
      int n = Character.digit(h.charAt(1), 16);
      if (h.charAt(0) != '4' || n < 4 || n > 12) {
        fail(what + ": control field of the deciphered block is not format 4 with a PIN of 4 to 12 digits");
        return null;
      }
      String pin = h.substring(2, 2 + n);
      if (!pin.matches("[0-9]+") || !h.substring(2 + n, 16).matches("A*")) {
        fail(what + ": deciphered PIN field is not digits then A fill");
        return null;
      }
      return pin;
    } catch (GeneralSecurityException e) {
      fail(what + ": " + e.getClass().getSimpleName());
      return null;
    }
  }

  static byte[] panField(String pan) {
    int m = Math.max(pan.length() - 12, 0);
    String d = pan.length() < 12 ? "0".repeat(12 - pan.length()) + pan : pan;
    StringBuilder s = new StringBuilder().append(m).append(d);
    while (s.length() < 32) {
      s.append('0');
    }
    return ISOUtil.hex2byte(s.toString());
  }

  /** Deciphers the worked example of docs/iso8583-issuer.md and checks it gives its PIN. */
  void checkWorkedExample(Path doc) throws IOException {
    String text = Files.readString(doc, StandardCharsets.UTF_8);
    Matcher pan = Pattern.compile("- PAN: `([0-9]+)`").matcher(text);
    Matcher pin = Pattern.compile("- PIN: `([0-9]+)`").matcher(text);
    Matcher de52 = Pattern.compile("- DE 52 on the wire: `10` `([0-9A-F]{32})`").matcher(text);
    if (!pan.find() || !pin.find() || !de52.find()) {
      fail("iso8583-issuer.md: worked example not found");
      return;
    }
    String got = decipher(ISOUtil.hex2byte(de52.group(1)), pan.group(1), "worked example");
    out(pin.group(1).equals(got) ? "worked example deciphers to its PIN" : "FAIL worked example: wrong PIN");
  }

  // ---- the link ----

  void serve(BaseChannel ch, int link) {
    out("link " + link + " open");
    synchronized (links) {
      links.add(ch);
    }
    try {
      while (true) {
        ISOMsg m;
        try {
          m = ch.receive();
        } catch (ISOException e) {
          // The frame was read whole: the next one starts after it.
          fail("link " + link + ": a message from pingate does not unpack");
          continue;
        }
        try {
          dispatch(ch, link, m);
        } catch (ISOException e) {
          fail("link " + link + ": " + e.getMessage());
        }
      }
    } catch (IOException e) {
      out("link " + link + " closed");
    } finally {
      synchronized (links) {
        links.remove(ch);
      }
      try {
        ch.disconnect();
      } catch (IOException e) {
        // closed already
      }
    }
  }

  void dispatch(BaseChannel ch, int link, ISOMsg m) throws ISOException, IOException {
    String mti = m.getMTI();
    if (m.hasField(11)) {
      synchronized (this) {
        if (!stans.add(m.getString(11) + "|" + m.getString(7))) {
          fail(mti + ": DE 11 and DE 7 used twice (pingate's STAN is new for every message)");
        }
      }
    }
    switch (mti) {
      case "0800" -> network(ch, link, m);
      case "0100" -> request(ch, m);
      case "0420" -> advice(ch, m);
      case "0810" -> fail("got 0810 " + m.getString(70) + ": pingate answered a request of the host's");
      default -> fail("got an unexpected MTI " + mti);
    }
  }

  static void send(BaseChannel ch, ISOMsg m) {
    try {
      synchronized (ch) {
        ch.send(m);
      }
    } catch (IOException | ISOException e) {
      out("send " + e.getClass().getSimpleName());
    }
  }

  /** Sends b behind its length header (BaseChannel.send(byte[]) writes none). */
  static void sendRaw(BaseChannel ch, byte[] b) {
    byte[] f;
    if (ch instanceof ASCIIChannel) {
      f = new byte[b.length + 4];
      System.arraycopy(String.format("%04d", b.length).getBytes(StandardCharsets.US_ASCII), 0, f, 0, 4);
      System.arraycopy(b, 0, f, 4, b.length);
    } else {
      f = new byte[b.length + 2];
      f[0] = (byte) (b.length >> 8);
      f[1] = (byte) b.length;
      System.arraycopy(b, 0, f, 2, b.length);
    }
    try {
      synchronized (ch) {
        ch.send(f);
      }
    } catch (IOException | ISOException e) {
      out("send " + e.getClass().getSimpleName());
    }
  }

  ISOMsg answer(ISOMsg req, String mti, int... fields) throws ISOException {
    ISOMsg r = new ISOMsg(mti);
    r.setPackager(packager);
    for (int f : fields) {
      if (req.hasField(f)) {
        r.set(f, req.getString(f));
      }
    }
    return r;
  }

  /** Checks that m carries the mandatory elements and none of the forbidden ones. */
  static void fieldUse(ISOMsg m, String what, int[] mandatory, int[] forbidden) {
    for (int f : mandatory) {
      if (!m.hasField(f)) {
        fail(what + ": DE " + f + " missing");
      }
    }
    for (int f : forbidden) {
      if (m.hasField(f)) {
        fail(what + ": DE " + f + " present");
      }
    }
  }

  /** DE 32 pingate's institution, DE 100 the issuer's, DE 12/13 the time and date of DE 7. */
  void common(ISOMsg m, String what, boolean localTime) {
    if (!institution.equals(m.getString(32))) {
      fail(what + ": DE 32 " + m.getString(32) + ", want pingate's routing.institution " + institution);
    }
    if (!receiving.equals(m.getString(100))) {
      fail(what + ": DE 100 " + m.getString(100) + ", want the issuer's institution " + receiving);
    }
    String de7 = m.getString(7);
    if (de7 == null || !de7.matches("(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])([01][0-9]|2[0-3])[0-5][0-9][0-5][0-9]")) {
      fail(what + ": DE 7 not MMDDhhmmss");
      return;
    }
    if (localTime && m.hasField(12) && !de7.substring(4).equals(m.getString(12))) {
      fail(what + ": DE 12 " + m.getString(12) + " is not DE 7's time " + de7.substring(4));
    }
    if (localTime && m.hasField(13) && !de7.substring(0, 4).equals(m.getString(13))) {
      fail(what + ": DE 13 " + m.getString(13) + " is not DE 7's date " + de7.substring(0, 4));
    }
  }

  // ---- network management ----

  void network(BaseChannel ch, int link, ISOMsg m) throws ISOException {
    String nmi = m.getString(70);
    String what = "0800 " + nmi;
    out("got  0800 " + nmi + " (" + switch (nmi == null ? "" : nmi) {
      case "001" -> "sign-on";
      case "002" -> "sign-off";
      case "301" -> "echo";
      case "161" -> "key change";
      default -> "unknown";
    } + ")");
    fieldUse(m, what, new int[] {7, 11, 32, 70, 100}, new int[] {2, 3, 39, 52, 125});
    common(m, what, false);
    if ("161".equals(nmi)) {
      fail("0800 161: pingate sends no key change to an issuer");
    }
    // DE 32 and DE 100 may be left out of an 0810 (the field use).
    ISOMsg r = bare0810 ? answer(m, "0810", 7, 11, 70) : answer(m, "0810", 7, 11, 32, 70, 100);
    String code = "00";
    boolean signOn = "001".equals(nmi);
    synchronized (this) {
      if (signOn && signOnRefusals > 0) {
        signOnRefusals--;
        code = "91";
        out("refused sign-on");
      } else if ("301".equals(nmi) && echoRefusals > 0) {
        echoRefusals--;
        code = "91";
        out("refused echo on link " + link);
      }
    }
    r.set(39, code);
    send(ch, r);
    if (signOn && code.equals("00") && hostEcho) {
      // A request of the host's own: pingate must take it as an answer
      // matching nothing and never answer it.
      ISOMsg own = new ISOMsg("0800");
      own.setPackager(packager);
      synchronized (this) {
        own.set(11, String.format("%06d", ++hostStan));
      }
      own.set(7, m.getString(7));
      own.set(70, "301");
      send(ch, own);
      out("sent own 0800 301 on link " + link);
    }
  }

  // ---- PIN operations ----

  static String key(String stan, String de7, String de32) {
    return stan + "|" + de7 + "|" + de32;
  }

  void request(BaseChannel ch, ISOMsg m) throws ISOException {
    String proc = m.getString(3);
    String pan = m.getString(2);
    Card card;
    synchronized (this) {
      card = pan == null ? null : cards.get(pan);
    }
    String label = card == null ? "unknown card" : card.label;
    String what = "0100 " + proc + " " + label;
    out("got  0100 " + proc + " " + label);
    int[] base = {2, 3, 7, 11, 12, 13, 32, 37, 41, 42};
    switch (proc == null ? "" : proc) {
      case "700000" -> fieldUse(m, what, concat(base, 52, 53, 125), new int[] {39, 70, 90, 123});
      case "710000" -> fieldUse(m, what, concat(base, 48, 53, 125), new int[] {39, 52, 70, 90, 123});
      case "720000" -> fieldUse(m, what, concat(base, 48), new int[] {39, 52, 53, 70, 90, 123, 125});
      default -> fail(what + ": unknown processing code");
    }
    common(m, what, true);
    if (m.hasField(53) && !m.getString(53).equals("04" + keyIndex + "000000000000")) {
      fail(what + ": DE 53 " + m.getString(53) + ", want 04" + keyIndex + " then 12 zeros");
    }
    if (m.hasField(48)) {
      Map<String, String> sub = m.getValue(48) instanceof String a
          ? de48ASCII(a, what) : de48((byte[]) m.getValue(48), what);
      if (sub.containsKey("04")) {
        fail(what + ": DE 48.04 (branch) sent to an issuer");
      }
      if (!proc.equals("700000") && !sub.containsKey("01")) {
        fail(what + ": DE 48.01 (teller) missing");
      }
    }
    ISOMsg r = answer(m, "0110", 2, 3, 7, 11, 32, 37, 41, 42, 100);
    String mode;
    synchronized (this) {
      if (card != null && "full".equals(card.mode)) {
        r.set(12, m.getString(12));
        r.set(13, m.getString(13));
      }
    }
    String code;
    synchronized (this) {
      mode = card == null ? null : card.mode;
      if (card != null) {
        card.mode = null;
      }
      String k = key(m.getString(11), m.getString(7), m.getString(32));
      if (card == null) {
        code = "14";
      } else if (reversedAhead.remove(k)) {
        out("original after its advice: not applied " + label);
        code = "94";
      } else if (mode != null && mode.startsWith("code=")) {
        code = mode.substring(5);
      } else {
        code = apply(card, proc, m, what, k);
      }
    }
    r.set(39, code);
    out("answer " + code + " " + label + (mode == null ? "" : " (" + mode + ")"));
    respond(ch, r, mode == null || mode.startsWith("code=") ? "" : mode);
  }

  /** Applies the operation to card and returns DE 39; called with the host locked. */
  String apply(Card card, String proc, ISOMsg m, String what, String k) {
    String prevPIN = card.pin;
    int prevTries = card.tries;
    switch (proc) {
      case "700000" -> {
        if (card.tries >= 3) {
          return "75";
        }
        String old = decipher(bytes(m, 52), card.pan, what + " DE 52");
        String neu = decipher(bytes(m, 125), card.pan, what + " DE 125");
        if (old == null || neu == null) {
          return "30";
        }
        if (!old.equals(card.pin)) {
          card.tries++;
          out("declined " + card.label + " wrong old PIN, tries " + card.tries);
          return card.tries >= 3 ? "75" : "55";
        }
        if (weak.contains(neu)) {
          return "P6";
        }
        card.pin = neu;
        card.tries = 0;
      }
      case "710000" -> {
        String neu = decipher(bytes(m, 125), card.pan, what + " DE 125");
        if (neu == null) {
          return "30";
        }
        if (weak.contains(neu)) {
          return "P6";
        }
        card.pin = neu;
        card.tries = 0;
      }
      case "720000" -> card.tries = 0;
      default -> {
        return "30";
      }
    }
    applied.put(k, new Applied(card, prevPIN, prevTries, m));
    out("applied " + opName(proc) + " " + card.label);
    state(card);
    return "00";
  }

  void state(Card card) {
    out("state " + card.label + " pin=" + (card.pin.equals(card.initialPIN) ? "initial" : "other") + " tries=" + card.tries);
  }

  static String opName(String proc) {
    return switch (proc) {
      case "700000" -> "change";
      case "710000" -> "reset";
      case "720000" -> "unblock";
      default -> proc;
    };
  }

  /** Sends answer r as mode says. */
  void respond(BaseChannel ch, ISOMsg r, String mode) throws ISOException {
    if (mode.startsWith("late=")) {
      long ms = Long.parseLong(mode.substring(5));
      later.schedule(() -> send(ch, r), ms, TimeUnit.MILLISECONDS);
      return;
    }
    switch (mode) {
      case "close" -> {
        try {
          ch.disconnect();
        } catch (IOException e) {
          // closing is the point
        }
        out("closed the link under the request");
      }
      case "no39" -> {
        r.unset(39);
        send(ch, r);
      }
      case "dup" -> {
        send(ch, r);
        send(ch, (ISOMsg) r.clone());
      }
      case "hold" -> out("holding the answer " + r.getString(11));
      case "otherlink" -> {
        // The answer on another open link than the request's.
        BaseChannel other = null;
        synchronized (links) {
          for (BaseChannel c : links) {
            if (c != ch) {
              other = c;
            }
          }
        }
        if (other == null) {
          fail("otherlink: no other open link");
          return;
        }
        send(other, r);
        out("answered on another link");
      }
      case "answerclose" -> {
        // The answer, then the link closed at once: the 0110 is on the
        // wire before the close.
        send(ch, r);
        try {
          ch.disconnect();
        } catch (IOException e) {
          // closing is the point
        }
        out("closed the link after the answer");
      }
      case "full" -> {
        // DE 12 and 13 are optional in an 0110: the request's, returned.
        send(ch, r);
      }
      case "wrong7" -> {
        String de7 = r.getString(7);
        r.set(7, de7.substring(0, 8) + (de7.charAt(8) == '5' ? '4' : '5') + de7.charAt(9));
        send(ch, r);
      }
      case "wrong32" -> {
        r.set(32, institution + "1");
        send(ch, r);
      }
      case "wrong11" -> {
        r.set(11, String.format("%06d", (Integer.parseInt(r.getString(11)) + 1) % 1000000));
        send(ch, r);
      }
      case "no41" -> {
        r.unset(41);
        send(ch, r);
      }
      case "garbage" -> {
        // An 0110 whose bitmap names DE 4, which the dialect does not have:
        // it does not unpack.
        byte[] b = r.pack();
        b[2] |= 0x10;
        sendRaw(ch, b);
      }
      default -> send(ch, r);
    }
  }

  /** DE 48's subfields: 2 ASCII digits of tag, 1 BCD byte of length, the ASCII value. */
  static Map<String, String> de48(byte[] b, String what) {
    Map<String, String> out = new LinkedHashMap<>();
    int i = 0;
    while (i < b.length) {
      if (i + 3 > b.length) {
        fail(what + ": DE 48 ends inside a subfield header");
        break;
      }
      String tag = new String(b, i, 2, StandardCharsets.US_ASCII);
      int hi = (b[i + 2] >> 4) & 0xF;
      int lo = b[i + 2] & 0xF;
      if (!tag.matches("[0-9]{2}") || hi > 9 || lo > 9) {
        fail(what + ": DE 48 subfield header not digits");
        break;
      }
      int n = hi * 10 + lo;
      if (i + 3 + n > b.length) {
        fail(what + ": DE 48." + tag + " longer than DE 48");
        break;
      }
      out.put(tag, new String(b, i + 3, n, StandardCharsets.US_ASCII));
      i += 3 + n;
    }
    return out;
  }

  /** DE 48 of the acquirer dialect: 2-digit tag, 2-digit length, value. */
  static Map<String, String> de48ASCII(String s, String what) {
    Map<String, String> out = new LinkedHashMap<>();
    int i = 0;
    while (i < s.length()) {
      if (i + 4 > s.length() || !s.substring(i, i + 4).matches("[0-9]{4}")) {
        fail(what + ": DE 48 subfield header not 4 digits");
        break;
      }
      int n = Integer.parseInt(s.substring(i + 2, i + 4));
      if (i + 4 + n > s.length()) {
        fail(what + ": DE 48." + s.substring(i, i + 2) + " longer than DE 48");
        break;
      }
      out.put(s.substring(i, i + 2), s.substring(i + 4, i + 4 + n));
      i += 4 + n;
    }
    return out;
  }

  /** A PIN block element: raw bytes (issuer dialect) or hex (acquirer dialect). */
  static byte[] bytes(ISOMsg m, int f) {
    Object v = m.getValue(f);
    return v instanceof String h ? ISOUtil.hex2byte(h) : (byte[]) v;
  }

  static int[] concat(int[] a, int... b) {
    int[] r = new int[a.length + b.length];
    System.arraycopy(a, 0, r, 0, a.length);
    System.arraycopy(b, 0, r, a.length, b.length);
    return r;
  }

  // ---- reversal advices ----

  void advice(BaseChannel ch, ISOMsg m) throws ISOException {
    String pan = m.getString(2);
    Card card;
    synchronized (this) {
      card = pan == null ? null : cards.get(pan);
    }
    String label = card == null ? "unknown card" : card.label;
    String what = "0420 " + label;
    out("got  0420 " + m.getString(3) + " " + label);
    fieldUse(m, what, new int[] {2, 3, 7, 11, 32, 37, 41, 42, 90}, new int[] {52, 53, 70, 123, 125});
    common(m, what, true);
    String de90 = m.getString(90);
    String k = null;
    if (de90 == null || de90.length() != 42) {
      fail(what + ": DE 90 not 42 digits");
    } else {
      if (!de90.startsWith("0100")) {
        fail(what + ": DE 90 positions 1-4 " + de90.substring(0, 4) + ", want 0100");
      }
      String de32 = de90.substring(20, 31);
      if (!de32.equals(String.format("%11s", institution).replace(' ', '0'))) {
        fail(what + ": DE 90 positions 21-31 " + de32 + ", want pingate's institution zero-filled");
      }
      if (!de90.substring(31).equals("00000000000")) {
        fail(what + ": DE 90 positions 32-42 not zeros");
      }
      k = key(de90.substring(4, 10), de90.substring(10, 20), institution);
    }
    ISOMsg r = answer(m, "0430", 2, 3, 7, 11, 32, 37, 41, 42, 90, 100);
    String advMode;
    synchronized (this) {
      advMode = card == null ? null : card.advMode;
      if (card != null) {
        card.advMode = null;
      }
      if ("revnone".equals(advMode)) {
        out("advice left unanswered " + label);
        return;
      }
      if ("revhold".equals(advMode)) {
        card.advMode = advMode; // until "release LABEL" on standard input
        out("advice left unanswered " + label);
        return;
      }
      Applied ap = k == null ? null : applied.get(k);
      if (ap != null && !ap.card.pan.equals(pan)) {
        fail(what + ": DE 2 is not the original's");
        ap = null;
      }
      if (ap != null) {
        for (int f : new int[] {3, 37, 41, 42}) {
          if (!String.valueOf(ap.request.getString(f)).equals(String.valueOf(m.getString(f)))) {
            fail(what + ": DE " + f + " is not the original's");
          }
        }
        if (ap.undone) {
          out("repeated advice " + label);
        } else {
          ap.undone = true;
          ap.card.pin = ap.prevPIN;
          ap.card.tries = ap.prevTries;
          out("undone " + opName(m.getString(3)) + " " + label);
          state(ap.card);
        }
      } else if (k != null && !reversedAhead.contains(k)) {
        reversedAhead.add(k);
        out("advice with nothing to undo " + label);
      }
    }
    String code = "rev96".equals(advMode) ? "96" : "00";
    r.set(39, code);
    if ("revbare".equals(advMode)) {
      // Only the elements the field use makes mandatory in an 0430.
      r.unset(2);
      r.unset(90);
      r.unset(100);
    }
    out("answer 0430 " + code + " " + label);
    send(ch, r);
  }

  synchronized void printLedger() {
    for (Card c : cards.values()) {
      out("ledger " + c.label + " pin=" + (c.pin.equals(c.initialPIN) ? "initial" : "other") + " tries=" + c.tries);
    }
  }
}
