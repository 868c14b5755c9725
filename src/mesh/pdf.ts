/** A plain A4 text PDF (pdf-lib, standard Helvetica) for the ITK3 Send Document attachment. */
import { PDFDocument, StandardFonts, rgb, type PDFFont } from 'pdf-lib';

export interface PdfSection {
  heading: string;
  lines: string[];
}

export interface PdfDocumentContent {
  title: string;
  /** Document metadata keywords (e.g. the SNOMED CT codes summarised). */
  keywords?: string[];
  /** Fixed date for reproducible output (PDF CreationDate/ModDate). */
  createdAt?: Date;
  sections: PdfSection[];
}

const PAGE: [number, number] = [595.28, 841.89];
const MARGIN = 50;

/** Standard fonts encode WinAnsi only: fold accents and replace anything else so rendering never throws. */
export function pdfSafeText(text: string): string {
  return text
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .replace(/[\u2018\u2019]/g, "'")
    .replace(/[\u201c\u201d]/g, '"')
    .replace(/[\u2013\u2014]/g, '-')
    .replace(/[\t\r\n]+/g, ' ')
    .replace(/[^\x20-\x7e]/g, '?');
}

function wrap(text: string, font: PDFFont, size: number, width: number): string[] {
  const out: string[] = [];
  let line = '';
  for (const word of pdfSafeText(text).split(' ')) {
    const candidate = line ? `${line} ${word}` : word;
    if (font.widthOfTextAtSize(candidate, size) <= width) {
      line = candidate;
      continue;
    }
    if (line) out.push(line);
    // Break words longer than the line.
    let rest = word;
    while (font.widthOfTextAtSize(rest, size) > width && rest.length > 1) {
      let cut = rest.length - 1;
      while (cut > 1 && font.widthOfTextAtSize(rest.slice(0, cut), size) > width) cut--;
      out.push(rest.slice(0, cut));
      rest = rest.slice(cut);
    }
    line = rest;
  }
  if (line) out.push(line);
  return out.length ? out : [''];
}

export async function renderPdf(content: PdfDocumentContent): Promise<Uint8Array> {
  const doc = await PDFDocument.create();
  const created = content.createdAt ?? new Date();
  doc.setTitle(pdfSafeText(content.title));
  doc.setProducer('sp-bridge');
  if (content.keywords?.length) doc.setKeywords(content.keywords.map(pdfSafeText));
  doc.setCreator('sp-bridge');
  doc.setCreationDate(created);
  doc.setModificationDate(created);
  const font = await doc.embedFont(StandardFonts.Helvetica);
  const bold = await doc.embedFont(StandardFonts.HelveticaBold);
  const width = PAGE[0] - 2 * MARGIN;
  let page = doc.addPage(PAGE);
  let y = PAGE[1] - MARGIN;
  const draw = (text: string, f: PDFFont, size: number, gap: number) => {
    for (const line of wrap(text, f, size, width)) {
      if (y - size < MARGIN) {
        page = doc.addPage(PAGE);
        y = PAGE[1] - MARGIN;
      }
      y -= size;
      page.drawText(line, { x: MARGIN, y, size, font: f, color: rgb(0, 0, 0) });
      y -= gap;
    }
  };
  draw(content.title, bold, 16, 10);
  for (const section of content.sections) {
    y -= 6;
    draw(section.heading, bold, 12, 6);
    for (const line of section.lines) draw(line, font, 10, 4);
  }
  return doc.save({ useObjectStreams: false });
}
